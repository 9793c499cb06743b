// Opens an agentferry link in Debian's chromium (headless, driven by playwright-core) and says on
// its last stdout line, as JSON, what the page did: its final state, the error it showed, and the
// SHA-256 and size of what it saved. Run by tests/browser.rs; one scenario per run:
//
//   node receive.mjs '{"link": "...", "scenario": "download", "out": "/tmp/dir"}'
//
// scenarios:
//   download  the browser has no File System Access API: the page hands the verified file to the
//             browser as a download, which Playwright saves into `out`
//   picker    showSaveFilePicker answers with a file in the origin-private file system, so the
//             page's streaming writer is the one that saves; the file is read back afterwards
// With "tamper": true, one byte of the chunk stream is flipped on its way to the page (in the
// HTTP answer, or in a WebSocket message from the relay for a relay link). With
// "passwords": [...], a password-protected link is answered with each in turn until the page
// leaves its password form; `attempts` says what each got (a problem code, or the next state).
//   open      only load the link and wait for the page to settle (for error views)
//   upload    an upload link: the page is given `file` to send, and says what it sent
//   fetch     no page of ours: the browser reads `link`, a plain file, and drops it (the
//             reference bench/browser.py measures beside the page)
//   node      no browser: run protocol.js in Node with its plain-JS AES-GCM (the path a page
//             served over plain http on a LAN address takes, where WebCrypto is missing)
//
// The result's `timing` says how long the save took, from the click to the page's final state,
// and the CPU seconds chromium's processes used meanwhile (bench/browser.py reads it).
//
// Exits non-zero only when the scenario itself could not run (no chromium, a timeout).

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = JSON.parse(process.argv[2]);
const CHROMIUM = process.env.AGENTFERRY_CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT = 60_000;
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const say = (result) => console.log(JSON.stringify(result));

async function inNode() {
  const { Transfer, parseLink } = await import('../../src/web/assets/protocol.js');
  const url = new URL(args.link);
  const transfer = new Transfer({ ...parseLink(url.pathname, url.hash), origin: url.origin, webcrypto: false });
  const parts = [];
  const sink = { write: async (b) => parts.push(b), finish: async () => {}, abort: async () => (parts.length = 0) };
  try {
    await transfer.hello();
    const verified = await transfer.fetch(sink);
    const data = Buffer.concat(parts);
    return { state: 'done', verified, sha256: sha256(data), bytes: data.length };
  } catch (e) {
    return { state: 'error', error_code: e.code ?? null, detail: e.message };
  }
}

/// CPU seconds (user + system) used so far by every process of the chromium started with
/// `profile` (the browser, its renderer, GPU and network processes), from /proc.
function browserCpu(profile) {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(profile)) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process exited between the listing and the read
    }
  }
  return ticks / 100; // USER_HZ, 100 on Linux
}

async function inBrowser() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'agentferry-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    downloadsPath: args.out,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    if (args.scenario === 'fetch') {
      // The reference: the same browser reading a plain file over HTTP, bytes counted and dropped.
      await page.goto(new URL('/', args.link).href);
      const cpu0 = browserCpu(profile);
      const got = await page.evaluate(async (url) => {
        const t0 = performance.now();
        const reader = (await fetch(url, { cache: 'no-store' })).body.getReader();
        let bytes = 0;
        for (let r = await reader.read(); !r.done; r = await reader.read()) bytes += r.value.length;
        return { seconds: (performance.now() - t0) / 1000, bytes };
      }, args.link);
      return { state: 'done', bytes: got.bytes, timing: { seconds: got.seconds, cpu_seconds: browserCpu(profile) - cpu0 } };
    }
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    const foreign = [];
    page.on('request', (r) => new URL(r.url()).origin !== new URL(args.link).origin && foreign.push(r.url()));
    const downloads = [];
    page.on('download', (d) => downloads.push(d));

    if (args.scenario === 'picker') {
      await page.addInitScript(() => {
        window.showSaveFilePicker = async ({ suggestedName }) =>
          (await navigator.storage.getDirectory()).getFileHandle(suggestedName, { create: true });
      });
    } else {
      // A browser without the File System Access API (Firefox, Safari).
      await page.addInitScript(() => Object.defineProperty(window, 'showSaveFilePicker', { value: undefined }));
    }
    if (args.tamper && new URL(args.link).hash.includes('via=relay')) {
      // Through the relay: the first delivery big enough to be a chunk gets one byte flipped
      // inside its ciphertext (DELIVER = 0x81, mailbox id, frame).
      let flipped = false;
      await page.routeWebSocket(/\/v1\/relay$/, (ws) => {
        const server = ws.connectToServer();
        ws.onMessage((m) => server.send(m));
        server.onMessage((m) => {
          if (typeof m !== 'string' && !flipped && m[0] === 0x81 && m.length > 33 + 32 + 2000) {
            m = Buffer.from(m);
            m[33 + 32 + 1000] ^= 0x01;
            flipped = true;
          }
          ws.send(m);
        });
      });
    } else if (args.tamper) {
      // The answer to the page's `want` (the request after the hello) gets one byte flipped
      // inside the first chunk's ciphertext.
      let posts = 0;
      await page.route('**/v2/transfers/*', async (route) => {
        posts += 1;
        const response = await route.fetch();
        let body = await response.body();
        if (posts === 2) {
          body = Buffer.from(body);
          body[32 + 1000] ^= 0x01;
        }
        await route.fulfill({ response, body });
      });
    }

    const response = await page.goto(args.link);
    const settled = (states) =>
      page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout: TIMEOUT });
    await settled(['password', 'offer', 'pick', 'error']);
    let state = await page.evaluate(() => document.body.dataset.state);
    let timing = null;
    if (state === 'pick' && args.scenario === 'upload') {
      const cpu0 = browserCpu(profile);
      const t0 = performance.now();
      await page.setInputFiles('#pick-input', args.file);
      await settled(['done', 'error']);
      timing = { seconds: (performance.now() - t0) / 1000, cpu_seconds: browserCpu(profile) - cpu0 };
      state = await page.evaluate(() => document.body.dataset.state);
    }
    const attempts = [];
    for (const password of state === 'password' ? (args.passwords ?? []) : []) {
      await page.evaluate(() => delete document.getElementById('password-problem').dataset.code);
      await page.fill('#password-input', password);
      await page.click('#password-submit');
      await page.waitForFunction(
        () => document.body.dataset.state !== 'password' || document.getElementById('password-problem').dataset.code,
        null,
        { timeout: TIMEOUT },
      );
      state = await page.evaluate(() => document.body.dataset.state);
      attempts.push(state === 'password' ? await page.evaluate(() => document.getElementById('password-problem').dataset.code) : state);
      if (state !== 'password') break;
    }
    if (state === 'offer' && args.scenario !== 'open') {
      const cpu0 = browserCpu(profile);
      const t0 = performance.now();
      await page.click('#save');
      await settled(['done', 'error']);
      timing = { seconds: (performance.now() - t0) / 1000, cpu_seconds: browserCpu(profile) - cpu0 };
      state = await page.evaluate(() => document.body.dataset.state);
    }
    const view = await page.evaluate(() => ({
      error_code: document.getElementById('error-code').textContent || null,
      error_title: document.getElementById('error-title').textContent || null,
      detail: document.getElementById('error-detail').textContent || null,
      file_name: document.getElementById('file-name').textContent || null,
      sent_sha256: document.getElementById('done-sha256').textContent || null,
    }));
    if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });

    const result = { state, attempts, timing, ...view, status: response.status(), headers: response.headers(), foreign, problems };
    if (state === 'done' && args.scenario === 'picker') {
      Object.assign(
        result,
        await page.evaluate(async (name) => {
          const file = await (await (await navigator.storage.getDirectory()).getFileHandle(name)).getFile();
          const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
          return { sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''), bytes: file.size };
        }, view.file_name),
      );
    }
    if (args.scenario === 'picker' && state === 'error' && view.file_name) {
      result.picked_bytes = await page.evaluate(async (name) => {
        const dir = await navigator.storage.getDirectory();
        const handle = await dir.getFileHandle(name).catch(() => null);
        return handle ? (await handle.getFile()).size : null;
      }, view.file_name);
    }
    if (state === 'done' && args.scenario !== 'picker' && args.scenario !== 'upload') {
      // The page is done once it has handed the file over; the browser starts the download
      // after that.
      if (downloads.length === 0) await page.waitForEvent('download', { timeout: TIMEOUT });
      if (downloads.length !== 1) throw new Error(`expected one download, saw ${downloads.length}`);
      const saved = join(args.out, downloads[0].suggestedFilename());
      await downloads[0].saveAs(saved);
      const data = readFileSync(saved);
      Object.assign(result, { saved, suggested_name: downloads[0].suggestedFilename(), sha256: sha256(data), bytes: data.length });
    }
    result.downloads = downloads.length;
    return result;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

try {
  say(args.scenario === 'node' ? await inNode() : await inBrowser());
} catch (e) {
  console.error(e.stack ?? String(e));
  process.exit(2);
}
