// The receive side of agentferry's protocol, for the browser page (and for Node, which the tests
// use to check the plain-HTTP crypto path against a real sender). No DOM here: app.js owns the
// page. The Rust code this mirrors: src/crypto.rs (key schedule), src/frame.rs (frames),
// src/core/mod.rs (control messages), src/transport/http (the route and its statuses),
// src/relay/proto.rs and src/transport/channel.rs (the relay path).
//
// Keys: HKDF-SHA256 with salt "agentferry v1" and info = label || 0x00 || transfer id || extra,
// from the 256-bit session key in the link's fragment. Frames: a 32-byte header, then AES-256-GCM
// ciphertext and tag; nonce = kind || 0 0 0 || index (u64 BE); associated data = transfer id ||
// header. AES-GCM runs in WebCrypto where the page is a secure context (https, localhost), and
// in the vendored @noble/ciphers where it is not (a sender on a LAN address over plain http);
// the whole-file SHA-256 in the vendored hash-wasm.
//
// A password-protected link (`p=scrypt15`) holds the key XOR scrypt(password, "agentferry link
// password" || 0x00 || transfer id; N = 2^15, r = 8, p = 1), as src/crypto.rs makes it.

import { createSHA256, gcm, hkdf, scryptAsync, sha256 } from './vendor.js';

const HEADER_LEN = 32;
export const TAG_LEN = 16;
const MAX_META_LEN = 64 * 1024;
const MAX_CHUNK_SIZE = 16 << 20;
export const KIND = { chunk: 1, trailer: 2, manifest: 3, control: 4 };
export const FLAG_LAST = 1;
const SALT = new TextEncoder().encode('agentferry v1');
/// Times a broken stream is asked again from the first missing chunk before the page gives up.
const RETRIES = 3;

/// A failure the page shows; `code` picks the view (see app.js).
export class ReceiveError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/// A name the browser may save under: no separators, no control characters, no leading dot.
export const safeName = (name) => name.replace(/[/\\\u0000-\u001f\u007f]/g, '_').replace(/^\.+/, '_').slice(0, 255) || 'file';

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function fromHex(text) {
  if (!/^([0-9a-f]{2})*$/.test(text)) throw new ReceiveError('link_malformed', 'the transfer id is not hexadecimal');
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new ReceiveError('link_malformed', 'the key is not base64url');
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export const toBase64url = (bytes) =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/// What a link says: the transfer id (from the path `/r/<id>`) and, from the fragment, the key,
/// the expiry, whether the key is masked by a password, and whether the page was served by a
/// relay to reach the sender through it, and whether it is a folder
/// (`#k=<base64url>&e=<unix seconds>[&p=scrypt15][&via=relay][&folder=1]`), or an upload link
/// (`&via=relay&up=1`, src/web/upload.rs: the page sends instead).
export function parseLink(pathname, fragment) {
  const id = fromHex((pathname.match(/^\/r\/([0-9a-f]{32})$/) ?? [])[1] ?? 'x');
  const params = new URLSearchParams(fragment.replace(/^#/, ''));
  const key = fromBase64url(params.get('k') ?? '');
  if (key.length !== 32) throw new ReceiveError('link_malformed', 'the link holds no whole key');
  const expiresAt = Number(params.get('e'));
  const asks = params.get('p');
  if (asks !== null && asks !== 'scrypt15') throw new ReceiveError('link_malformed', `an unknown password scheme ${asks}`);
  const via = params.get('via') ?? 'http';
  const folder = params.get('folder');
  const upload = params.get('up');
  if (upload !== null && (upload !== '1' || via !== 'relay')) throw new ReceiveError('link_malformed', 'a damaged upload mark');
  if (folder !== null && folder !== '1') throw new ReceiveError('link_malformed', 'a damaged folder mark');
  if (via !== 'http' && via !== 'relay') throw new ReceiveError('link_malformed', `an unknown way to the sender ${via}`);
  return {
    via,
    folder: folder === '1',
    upload: upload === '1',
    id,
    key,
    expiresAt: Number.isSafeInteger(expiresAt) && expiresAt > 0 ? expiresAt : null,
    needsPassword: asks !== null,
  };
}

const LINK_PASSWORD_SALT = new TextEncoder().encode('agentferry link password\0');

/// The link's real key, from the masked one and the password the person typed. Whether the
/// password was right only the sender can tell (a 403 to the token of a wrong key).
export async function unmask(link, password) {
  const salt = concat(LINK_PASSWORD_SALT, link.id);
  const mask = await scryptAsync(new TextEncoder().encode(password), salt, { N: 2 ** 15, r: 8, p: 1, dkLen: 32 });
  return { ...link, key: link.key.map((b, i) => b ^ mask[i]), needsPassword: false, guarded: true };
}

/// The whole-file SHA-256, as it arrives: hash-wasm's WebAssembly (about twice @noble/hashes'
/// speed, which would otherwise cap the page near 70 MB/s), or @noble/hashes where the browser
/// runs no WebAssembly. (Hashing in a worker beside decrypting and saving gained nothing on two
/// cores, where the page and the browser's network process keep both busy already.)
export async function fileHash() {
  try {
    const wasm = await createSHA256();
    wasm.init();
    return { update: (bytes) => wasm.update(bytes), digest: () => wasm.digest('binary') };
  } catch {
    return sha256.create();
  }
}

export function derive(key, label, id, extra = new Uint8Array(0)) {
  const info = concat(new TextEncoder().encode(label), new Uint8Array([0]), id, extra);
  return hkdf(sha256, key, SALT, info, 32);
}

/// The bearer token the sender expects: proves the key without sending it.
export const httpToken = (key, id) => toBase64url(derive(key, 'http-token', id));

/// AES-256-GCM under one key: WebCrypto when it is there, else @noble/ciphers. Both throw on a
/// failed tag. `webcrypto: false` forces the second (for the tests).
export async function aead(rawKey, { webcrypto = true } = {}) {
  const subtle = webcrypto ? globalThis.crypto?.subtle : undefined;
  if (subtle) {
    const key = await subtle.importKey('raw', rawKey, 'AES-GCM', false, ['encrypt', 'decrypt']);
    const params = (iv, additionalData) => ({ name: 'AES-GCM', iv, additionalData, tagLength: 128 });
    return {
      seal: async (nonce, aad, plain) => new Uint8Array(await subtle.encrypt(params(nonce, aad), key, plain)),
      open: async (nonce, aad, sealed) => new Uint8Array(await subtle.decrypt(params(nonce, aad), key, sealed)),
    };
  }
  return {
    seal: async (nonce, aad, plain) => gcm(rawKey, nonce, aad).encrypt(plain),
    open: async (nonce, aad, sealed) => gcm(rawKey, nonce, aad).decrypt(sealed),
  };
}

export function encodeHeader(kind, flags, len, index, epoch) {
  const h = new Uint8Array(HEADER_LEN);
  const view = new DataView(h.buffer);
  h[0] = kind;
  h[1] = flags;
  view.setUint32(4, len);
  view.setBigUint64(8, BigInt(index));
  h.set(epoch, 16);
  return h;
}

/// The header of a frame, checked as src/frame.rs checks it; `null` for "read more".
function checkHeader(buf, maxChunk) {
  if (buf.length < HEADER_LEN) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_LEN);
  const kind = buf[0];
  if (kind < 1 || kind > 4) throw new ReceiveError('tampered', `unknown frame kind ${kind}`);
  if (buf[2] !== 0 || buf[3] !== 0 || (buf[1] & ~FLAG_LAST) !== 0) {
    throw new ReceiveError('tampered', 'reserved header bits are set');
  }
  const len = view.getUint32(4);
  const limit = kind === KIND.chunk ? maxChunk : MAX_META_LEN;
  if (len > limit + TAG_LEN || len < TAG_LEN) throw new ReceiveError('tampered', `a frame of ${len} bytes`);
  return { kind, flags: buf[1], len, index: view.getBigUint64(8), epoch: buf.subarray(16, 32) };
}

export function nonce(kind, index) {
  const n = new Uint8Array(12);
  n[0] = kind;
  new DataView(n.buffer).setBigUint64(4, BigInt(index));
  return n;
}

/// Opens the frames of one transfer, whatever epoch sealed them (the latest key is kept).
export class Opener {
  constructor(key, id, options) {
    Object.assign(this, { key, id, options, epoch: null, cipher: null });
  }

  async open(frame, maxChunk) {
    const header = checkHeader(frame, maxChunk);
    if (!header || frame.length !== HEADER_LEN + header.len) throw new ReceiveError('tampered', 'a cut frame');
    const epochHex = hex(header.epoch);
    if (this.epoch !== epochHex) {
      this.cipher = await aead(derive(this.key, 'frame-key', this.id, header.epoch), this.options);
      this.epoch = epochHex;
    }
    const aad = concat(this.id, frame.subarray(0, HEADER_LEN));
    let payload;
    try {
      payload = await this.cipher.open(nonce(header.kind, header.index), aad, frame.subarray(HEADER_LEN));
    } catch {
      throw new ReceiveError('tampered', `frame ${header.index} failed authentication`);
    }
    return { kind: header.kind, flags: header.flags, index: header.index, payload };
  }
}

/// Seals the page's control messages under an epoch of its own, numbered 1, 2, 3… as the Rust
/// receiver numbers them, so no (key, nonce) pair is used twice.
class ControlSealer {
  constructor(key, id, options) {
    this.ready = epochSealer(key, id, options);
    this.sequence = 0n;
  }

  async seal(control) {
    const seal = await this.ready;
    this.sequence += 1n;
    return seal(KIND.control, 0, this.sequence, new TextEncoder().encode(JSON.stringify(control)));
  }
}

/// Seals frames of transfer `id` under one fresh random epoch: `seal(kind, flags, index,
/// plain)`. Its caller seals each (kind, index) at most once, so no nonce repeats under the key.
export async function epochSealer(key, id, options = {}) {
  const epoch = crypto.getRandomValues(new Uint8Array(16));
  const cipher = await aead(derive(key, 'frame-key', id, epoch), options);
  return async (kind, flags, index, plain) => {
    const header = encodeHeader(kind, flags, plain.length + TAG_LEN, index, epoch);
    return concat(header, await cipher.seal(nonce(kind, index), concat(id, header), plain));
  };
}

/// Cuts a response body into whole frames.
class FrameReader {
  constructor(body, maxChunk) {
    Object.assign(this, { reader: body.getReader(), maxChunk, buf: new Uint8Array(0) });
  }

  async next() {
    for (;;) {
      const header = checkHeader(this.buf, this.maxChunk);
      if (header && this.buf.length >= HEADER_LEN + header.len) {
        const frame = this.buf.slice(0, HEADER_LEN + header.len);
        this.buf = this.buf.subarray(HEADER_LEN + header.len);
        return frame;
      }
      const { done, value } = await this.reader.read();
      if (done) {
        if (this.buf.length) throw new ReceiveError('unreachable', 'the answer ended inside a frame');
        return null;
      }
      this.buf = this.buf.length ? concat(this.buf, value) : value;
    }
  }

  cancel() {
    this.reader.cancel().catch(() => {});
  }
}

/// How long the relay path waits for the next frame before it asks again from the first missing
/// chunk (the CLI receiver's request timeout on a relay), and how many chunks it lets the sender
/// have in flight (its window: 16 MiB at the default chunk size).
const RELAY_STALL_MS = 3000;
const RELAY_WINDOW = 64;
/// The relay path repeats its hello this often, this many times, before it says nobody answers.
const HELLO_EVERY_MS = 2000;
const HELLO_TRIES = 8;
const MAILBOX_PREFIX = new TextEncoder().encode('agentferry relay mailbox v1\0');
const RELAY = { subscribe: 0x04, send: 0x02, deliver: 0x81 };

/// The sender over HTTP (src/transport/http): each control frame is a POST, its answer the
/// frames. The statuses say why a request is refused.
class HttpCarrier {
  constructor({ url, token, expiresAt, guarded, fetchFn, sealer }) {
    Object.assign(this, { url, token, expiresAt, guarded, fetchFn, sealer, ordered: true });
  }

  async post(control) {
    const body = await this.sealer.seal(control);
    let resp;
    try {
      resp = await this.fetchFn(this.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/x-agentferry-frames' },
        body,
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      throw new ReceiveError('unreachable', `the sender does not answer (${e.message})`);
    }
    if (resp.status === 403) {
      const expired = this.expiresAt !== null && Date.now() / 1000 > this.expiresAt;
      if (expired) throw new ReceiveError('expired', 'the link has expired');
      if (this.guarded) throw new ReceiveError('wrong_password', 'the sender does not know the key this password gives');
      throw new ReceiveError('wrong_key', 'the sender does not know this key (a wrong link, or one no longer served)');
    }
    if (resp.status === 429) {
      throw new ReceiveError('too_many_attempts', 'the sender refuses this address for a while after too many wrong passwords');
    }
    if (resp.status === 410) throw new ReceiveError('completed', 'this file was already received with this link');
    if (!resp.ok) throw new ReceiveError('protocol', `the sender answered HTTP ${resp.status}`);
    return resp;
  }

  async hello(openManifest) {
    const resp = await this.post({ op: 'hello' });
    return openManifest(new Uint8Array(await resp.arrayBuffer()));
  }

  /// Frames of chunks `[from, to)`: one answer streams them all.
  async frames(from, to, maxChunk) {
    const resp = await this.post({ op: 'want', from, to });
    const reader = new FrameReader(resp.body, maxChunk);
    reader.advanced = () => {};
    return reader;
  }

  async complete(sha256hex) {
    // A sender that stops the moment it has the confirmation may cut its answer short; the file
    // is saved and verified either way, so that is no failure.
    try {
      await (await this.post({ op: 'complete', sha256: sha256hex })).arrayBuffer();
    } catch (e) {
      if (!(e instanceof TypeError) && e?.code !== 'unreachable') throw e;
    }
  }
}

/// A transfer's mailbox on a channel, for one side (`sender` or `receiver`), from its session key.
export const mailboxKey = (key, id, side) => derive(key, 'relay-mailbox', id, new TextEncoder().encode(side));
/// The id others send to (src/mailbox.rs): a hash of the key.
export const mailboxId = (key) => sha256(concat(MAILBOX_PREFIX, key));

/// The page's WebSocket to the relay that served it (src/relay/proto.rs): subscribed to the
/// mailbox `mine` with its key, sending to mailbox ids. Opened (again, after it closed) on first
/// use; what arrives waits in order for `take`.
export class RelaySocket {
  constructor(origin, mine) {
    Object.assign(this, { mine, mineHex: hex(mailboxId(mine)), queue: [], waiting: null, closed: null, opened: null });
    this.url = `${origin.replace(/^http/, 'ws')}/v1/relay`;
  }

  connect() {
    this.opened ??= new Promise((resolve, reject) => {
      this.closed = null;
      const ws = new WebSocket(this.url);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        ws.send(concat(new Uint8Array([RELAY.subscribe]), this.mine));
        resolve(ws);
      };
      ws.onmessage = ({ data }) => {
        const envelope = new Uint8Array(data);
        if (envelope[0] !== RELAY.deliver || envelope.length < 33) return; // a refusal: retries recover
        if (hex(envelope.subarray(1, 33)) !== this.mineHex) return;
        this.queue.push(envelope.subarray(33));
        this.wake();
      };
      ws.onclose = () => {
        this.opened = null;
        this.closed = new ReceiveError('unreachable', 'the connection to the relay closed');
        reject(this.closed);
        this.wake();
      };
    });
    return this.opened;
  }

  wake() {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  async send(to, payload) {
    const ws = await this.connect();
    ws.send(concat(new Uint8Array([RELAY.send]), to, payload));
  }

  /// Wait while more than `bytes` are queued on the socket (what this side holds).
  async drain(bytes) {
    const ws = await this.connect();
    while (ws.bufferedAmount > bytes) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /// The next message for this side, or null after `ms` without one.
  async take(ms) {
    const deadline = performance.now() + ms;
    for (;;) {
      if (this.queue.length) return this.queue.shift();
      if (this.closed) throw this.closed;
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async close() {
    (await this.connect()).close(1000);
  }
}

/// The sender through the relay that served the page (src/relay/proto.rs, the client in
/// src/channel/websocket.rs): one WebSocket, subscribed to the transfer's receiver mailbox with
/// its key, sending to the sender mailbox's id. The relay may drop or repeat messages, so frames
/// arrive under a window the page widens with `credit` as chunks land, and a stall asks again
/// from the first missing chunk, as the CLI receiver does on a relay.
class RelayCarrier {
  constructor({ key, id, origin, expiresAt, sealer }) {
    Object.assign(this, { expiresAt, sealer, ordered: false });
    this.toSender = mailboxId(mailboxKey(key, id, 'sender'));
    this.socket = new RelaySocket(origin, mailboxKey(key, id, 'receiver'));
  }

  async send(control) {
    await this.socket.send(this.toSender, await this.sealer.seal(control));
  }

  take(ms) {
    return this.socket.take(ms);
  }

  /// Post the hello until a manifest comes back. Anything else in the mailbox is skipped: a
  /// frame of an earlier request, or bytes someone who knows the mailbox's id sent.
  async hello(openManifest) {
    for (let i = 0; i < HELLO_TRIES; i++) {
      await this.send({ op: 'hello' });
      const until = performance.now() + HELLO_EVERY_MS;
      for (let left = HELLO_EVERY_MS; left > 0; left = until - performance.now()) {
        const frame = await this.take(left);
        if (frame === null) break;
        const manifest = await openManifest(frame).catch(() => null);
        if (manifest) return manifest;
      }
    }
    if (this.expiresAt !== null && Date.now() / 1000 > this.expiresAt) throw new ReceiveError('expired', 'the link has expired');
    throw new ReceiveError('no_answer', 'no sender answers for this link on the relay');
  }

  async frames(from, to, maxChunk) {
    let granted = Math.min(from + RELAY_WINDOW, to);
    await this.send({ op: 'want', from, to: granted });
    return {
      next: async () => {
        for (;;) {
          const frame = await this.take(RELAY_STALL_MS);
          if (frame === null) return null; // stalled: ask again from the first missing chunk
          const header = checkHeader(frame, maxChunk);
          if (header && frame.length === HEADER_LEN + header.len) return frame;
          throw new ReceiveError('tampered', 'a message on the relay is not a frame');
        }
      },
      advanced: (next) => {
        if (granted < to && next + RELAY_WINDOW / 2 >= granted) {
          granted = Math.min(next + RELAY_WINDOW, to);
          this.send({ op: 'credit', to: granted }).catch(() => {});
        }
      },
      cancel: () => {},
    };
  }

  /// Say the file is complete, and close once the relay has it all: a WebSocket closes after
  /// what was sent before the close.
  async complete(sha256hex) {
    await this.send({ op: 'complete', sha256: sha256hex });
    await this.socket.close();
  }
}

/// One transfer as the page sees it: `hello()` proves the key and returns the manifest;
/// `fetch(sink, onProgress)` streams, opens, hashes and writes every chunk, checks the trailer,
/// lets the sink finish (the file takes its name), then tells the sender it is complete. The
/// frames come over HTTP from the sender, or through the relay's mailboxes (`via: 'relay'`).
export class Transfer {
  constructor({ id, key, expiresAt = null, guarded = false, via = 'http', origin = '', fetch: fetchFn = globalThis.fetch.bind(globalThis), webcrypto = true }) {
    const options = { webcrypto };
    Object.assign(this, { id, manifest: null });
    this.opener = new Opener(key, id, options);
    const sealer = new ControlSealer(key, id, options);
    this.carrier =
      via === 'relay'
        ? new RelayCarrier({ key, id, origin, expiresAt, sealer })
        : new HttpCarrier({ url: `${origin}/v2/transfers/${hex(id)}`, token: httpToken(key, id), expiresAt, guarded, fetchFn, sealer });
  }

  async hello() {
    const m = await this.carrier.hello(async (frame) => {
      const opened = await this.opener.open(frame, 0);
      if (opened.kind !== KIND.manifest) throw new ReceiveError('tampered', 'the answer is not a manifest');
      return JSON.parse(new TextDecoder().decode(opened.payload));
    });
    const whole = (n) => Number.isSafeInteger(n) && n >= 0;
    if (!whole(m.size) || !whole(m.chunk_size) || m.chunk_size < 1 || m.chunk_size > MAX_CHUNK_SIZE) {
      throw new ReceiveError('protocol', 'the manifest declares no usable size');
    }
    if (typeof m.name !== 'string') throw new ReceiveError('protocol', 'the manifest names no file');
    m.chunk_count = Math.ceil(m.size / m.chunk_size);
    this.manifest = m;
    return m;
  }

  chunkLen(index) {
    const { size, chunk_size } = this.manifest;
    return Math.min(chunk_size, size - index * chunk_size);
  }

  /// Stream the file into `sink` ({ write(bytes), finish(), abort(), and for a folder digest()
  /// }). On any failure the sink is aborted, so nothing is kept under the file's name, and the
  /// error is thrown again.
  async fetch(sink, onProgress = () => {}) {
    try {
      const sha256hex = await this.stream(sink, onProgress);
      await sink.finish();
      // As every receiver does: only a verified, saved file ends the transfer.
      await this.carrier.complete(sha256hex);
      return sha256hex;
    } catch (e) {
      await sink.abort();
      throw e;
    }
  }

  /// Ask from the first missing chunk until the trailer verifies. A request that ends early (a
  /// broken connection, a stalled relay) is asked again; RETRIES in a row that bring nothing
  /// end the transfer.
  async stream(sink, onProgress) {
    const m = this.manifest;
    const count = m.chunk_count;
    // A folder's sink reads the stream's structure and so computes the folder's digest itself.
    const hash = sink.digest ? null : await fileHash();
    let next = 0;
    let done = 0;
    let lastError = null;
    for (let fruitless = 0; ; fruitless++) {
      const before = next;
      let frames = null;
      try {
        frames = await this.carrier.frames(next, count, m.chunk_size);
        for (;;) {
          const frame = await frames.next();
          if (frame === null) break; // the answer ended early: ask again from `next`
          const opened = await this.opener.open(frame, m.chunk_size);
          if (opened.kind === KIND.chunk && opened.index === BigInt(next) && next < count) {
            if (opened.payload.length !== this.chunkLen(next)) throw new ReceiveError('tampered', `chunk ${next} has the wrong length`);
            if (((opened.flags & FLAG_LAST) !== 0) !== (next + 1 === count)) throw new ReceiveError('tampered', `chunk ${next} is flagged wrongly`);
            hash?.update(opened.payload);
            await sink.write(opened.payload).catch((e) => {
              if (e instanceof ReceiveError) throw e; // a folder's sink refusing what it reads
              throw new ReceiveError('save_failed', `the file cannot be written (${e.message})`);
            });
            next += 1;
            done += opened.payload.length;
            onProgress(done, m.size);
            frames.advanced(next);
          } else if (opened.kind === KIND.trailer && opened.index === BigInt(count) && next === count) {
            const ours = hex(hash ? hash.digest() : await sink.digest());
            const theirs = hex(opened.payload);
            if (ours !== theirs || (m.sha256 && m.sha256 !== ours)) {
              throw new ReceiveError('integrity', 'the file does not match the SHA-256 the sender computed');
            }
            return ours;
          } else if (this.carrier.ordered || opened.kind === KIND.control) {
            throw new ReceiveError('tampered', `an unexpected frame (kind ${opened.kind}, index ${opened.index})`);
          }
          // Through the relay: an authentic frame of an earlier request, or one past a dropped one.
        }
      } catch (e) {
        frames?.cancel();
        // A broken connection is asked again; anything else (a forged frame, a failed save) ends it.
        lastError = e instanceof ReceiveError ? e : new ReceiveError('unreachable', `the download broke off (${e.message})`);
        if (lastError.code !== 'unreachable') throw lastError;
      }
      if (next > before) fruitless = -1;
      else if (fruitless >= RETRIES) throw lastError ?? new ReceiveError('unreachable', 'the sender stopped sending');
    }
  }
}
