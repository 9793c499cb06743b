// The browser page: reads the link, asks the sender for the manifest, saves the file where the
// person says, and shows progress or what went wrong. The protocol itself is in protocol.js.
//
// Saving: with the File System Access API (showSaveFilePicker) the file streams to disk through
// a writable that takes the file's place only when closed, after the SHA-256 matched; without it
// the chunks are kept in memory and handed to the browser as one download once verified. Either
// way a failed transfer leaves nothing under the file's name. The page only shows text through
// textContent, so nothing the sender names (the file name) can become markup.
//
// An upload link (`up=1`) turns the page around: the person picks a file and the page sends it
// (upload.js) to the agent that made the link.
//
// A folder (`folder=1` in the link) arrives as one zip, made in the tab (tree.js) and handed
// over once the folder's digest matched.
//
// A password-protected link asks for the password first; a wrong one (or too many) is said on
// the form, which stays for another try. The password never leaves the page: it unmasks the key.

import { ReceiveError, Transfer, parseLink, safeName, unmask } from './protocol.js';
import { FolderZip } from './tree.js';
import { upload } from './upload.js';

const $ = (id) => document.getElementById(id);

const VIEWS = {
  link_malformed: ['This link is incomplete', 'The part after # is missing or damaged. Copy the whole link again.'],
  wrong_key: [
    'This link does not open a file here',
    'The sender does not know this key: the link was changed on the way, or the sender no longer serves this file.',
  ],
  expired: ['This link has expired', 'Ask the sender for a new link.'],
  completed: ['This file was already received', 'A link gives its file once. Ask the sender for a new link.'],
  no_answer: [
    'No sender answers for this link',
    'The sender may have stopped or already given this file, or the link was changed on the way. Ask the sender for a new link.',
  ],
  not_taken: [
    'Nobody took the file',
    'This upload link was already used or has expired, or the agent that made it stopped. Ask for a new link.',
  ],
  unreachable: ['The sender cannot be reached', 'Its agentferry may have stopped, or this network cannot reach it. Try again later.'],
  tampered: [
    'The file was altered on the way',
    'A piece of it failed its authentication check (a modified frame, or a link that does not belong to it), so the download was stopped.',
  ],
  integrity: ['The file does not match the original', "What arrived differs from the sender's SHA-256, so it was discarded."],
  listing_refused: [
    'This folder cannot be saved safely',
    'It names a file outside itself, twice, or in a way no file system allows, so nothing of it was kept.',
  ],
  save_failed: ['The file could not be saved', 'The browser refused to write it (no space left, or no permission).'],
  protocol: ['The sender answered something this page does not understand', 'It may run another version of agentferry.'],
  unsupported: ['This browser cannot receive the file', 'Try a current Chrome, Edge, Firefox or Safari.'],
};

/// What the password form says when the sender refuses what a password gave.
const PASSWORD_PROBLEMS = {
  wrong_password: 'That password does not open this file. Check it and try again.',
  too_many_attempts: 'Too many wrong passwords from this network. Wait a minute, then try again.',
};

function show(state) {
  document.body.dataset.state = state;
  for (const section of document.querySelectorAll('main > section')) section.hidden = section.id !== state;
}

function fail(error) {
  const code = error instanceof ReceiveError ? error.code : 'protocol';
  const [title, text] = VIEWS[code] ?? VIEWS.protocol;
  $('error-title').textContent = title;
  $('error-text').textContent = text;
  $('error-code').textContent = code;
  $('error-detail').textContent = error.message;
  show('error');
}

function humanBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}


/// Writes the page lets run ahead of it: each is a round trip to the browser's file system, so
/// waiting for every one would leave the download idle in between (2 MiB at the default chunk).
const WRITES_AHEAD = 8;

/// Streams to a file the person picks; the writable replaces the file only on close. Writes are
/// queued in order; the oldest is awaited once WRITES_AHEAD are in flight, so a failed write
/// still stops the download within a few chunks, and all are awaited before the close.
async function pickerSink(name) {
  const handle = await window.showSaveFilePicker({ suggestedName: name });
  const writable = await handle.createWritable();
  const inFlight = [];
  return {
    write: async (bytes) => {
      const written = writable.write(bytes);
      written.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"
      inFlight.push(written);
      if (inFlight.length >= WRITES_AHEAD) await inFlight.shift();
    },
    finish: async () => {
      await Promise.all(inFlight.splice(0));
      await writable.close();
    },
    abort: () => writable.abort().catch(() => {}),
  };
}

/// Keeps the chunks in memory and hands them over as one download, once verified.
function downloadSink(name) {
  let parts = [];
  return {
    write: async (bytes) => {
      parts.push(bytes);
    },
    finish: async () => {
      const url = URL.createObjectURL(new Blob(parts, { type: 'application/octet-stream' }));
      parts = [];
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    },
    abort: async () => {
      parts = [];
    },
  };
}

/// A folder, as one zip download once its digest matched (see tree.js).
async function folderSink(root, size) {
  const zip = await FolderZip.create(root, size);
  const download = downloadSink(`${safeName(root)}.zip`);
  return {
    write: (bytes) => zip.write(bytes),
    digest: () => zip.digest(),
    finish: async () => {
      for (const part of zip.zip()) await download.write(part);
      await download.finish();
    },
    abort: async () => {},
  };
}

function progress(name) {
  $('progress-name').textContent = name;
  show('progress');
  let started = null;
  let shown = 0;
  return (done, total) => {
    const now = performance.now();
    started ??= now;
    if (done < total && now - shown < 100) return;
    shown = now;
    const seconds = (now - started) / 1000;
    $('bar').value = total ? done / total : 1;
    $('progress-bytes').textContent = `${humanBytes(done)} of ${humanBytes(total)}`;
    $('progress-speed').textContent = seconds > 0 ? `${humanBytes(done / seconds)}/s` : '';
  };
}

async function open(link) {
  const transfer = new Transfer({ ...link, origin: location.origin });
  return { transfer, manifest: await transfer.hello() };
}

/// Ask for the password until the sender accepts the key it gives.
function askPassword(link) {
  show('password');
  const input = $('password-input');
  input.focus();
  return new Promise((resolve, reject) => {
    $('password-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      $('password-submit').disabled = true;
      $('password-problem').textContent = 'Checking…';
      try {
        resolve(await open(await unmask(link, input.value)));
      } catch (e) {
        const problem = e instanceof ReceiveError && PASSWORD_PROBLEMS[e.code];
        if (!problem) return reject(e);
        $('password-problem').textContent = problem;
        $('password-problem').dataset.code = e.code;
        input.select();
      } finally {
        $('password-submit').disabled = false;
      }
    });
  });
}

/// An upload link: the person picks a file and the page sends it to the agent that made the link.
function sendMain(link) {
  show('pick');
  $('pick-input').addEventListener('change', async () => {
    const file = $('pick-input').files[0];
    if (!file) return;
    const name = safeName(file.name);
    const shown = progress(name);
    $('progress-name').textContent = `${name}: checking`;
    try {
      const sha256 = await upload(link, location.origin, file, (phase, done, total) => {
        $('progress-name').textContent = phase === 'hashing' ? `${name}: checking` : `${name}: sending`;
        shown(done, total);
      });
      $('done-title').textContent = 'Sent';
      $('done-name').textContent = name;
      $('done-sha256').textContent = sha256;
      show('done');
    } catch (e) {
      fail(e);
    }
  });
}

async function main() {
  if (!globalThis.ReadableStream || !globalThis.fetch || !globalThis.crypto?.getRandomValues) {
    throw new ReceiveError('unsupported', 'fetch streams or a random source are missing');
  }
  const link = parseLink(location.pathname, location.hash);
  if (link.upload) return sendMain(link);
  const { transfer, manifest } = link.needsPassword ? await askPassword(link) : await open(link);
  const name = safeName(manifest.name);
  $('file-name').textContent = name;
  $('file-size').textContent = `(${humanBytes(manifest.size)})`;
  const picker = typeof window.showSaveFilePicker === 'function' && !link.folder;
  $('save-how').textContent = link.folder
    ? 'A folder: it is kept in this tab until every file is verified, then your browser saves it as one zip.'
    : picker
      ? 'You choose where it goes; it is written there as it arrives, and verified before it takes its name.'
      : 'It is kept in this tab until every byte is verified, then your browser saves it as a download.';
  show('offer');
  $('save').addEventListener('click', async () => {
    let sink;
    try {
      sink = link.folder ? await folderSink(name, manifest.size) : picker ? await pickerSink(name) : downloadSink(name);
    } catch (e) {
      if (e.name === 'AbortError') return; // the person closed the picker: stay on the offer
      if (e instanceof ReceiveError) return fail(e);
      sink = downloadSink(name);
    }
    try {
      const sha256 = await transfer.fetch(sink, progress(name));
      $('done-name').textContent = link.folder ? `${name}.zip` : name;
      // A folder's digest covers its listing and each file's SHA-256, not the zip's bytes.
      if (link.folder) $('done-digest').textContent = 'folder digest';
      $('done-sha256').textContent = sha256;
      show('done');
    } catch (e) {
      fail(e);
    }
  });
}

main().catch(fail);
