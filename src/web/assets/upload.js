// The page as a sender, for an upload link (src/web/upload.rs): the person picks a file, the
// page makes the transfer's ticket, seals it as an offer to the node that made the link, and then
// answers that node's requests through the relay as every sender does (src/core/send.rs): the
// manifest for a hello; for a want, chunks [from, to) under a fresh epoch, and the trailer with
// the file's SHA-256 when `to` reaches the end; a credit goes on under the same epoch; the node's
// `complete` ends it. No DOM here; app.js owns the page.

import {
  FLAG_LAST,
  KIND,
  Opener,
  ReceiveError,
  RelaySocket,
  aead,
  concat,
  derive,
  epochSealer,
  fileHash,
  hex,
  mailboxId,
  mailboxKey,
  toBase64url,
} from './protocol.js';

/// The chunk size the page cuts files into (the CLI's default, src/manifest.rs).
const CHUNK_SIZE = 256 << 10;
/// Bytes the page lets wait on its WebSocket before it reads the next chunk.
const SOCKET_AHEAD = 8 << 20;
/// How long the page waits for the node's first request after its offer: a node that listens on
/// the link answers in a second or two; none does once the link is used up or expired.
const ANSWER_MS = 30_000;
/// How long the page waits for the node's next request before it says the node is gone.
const IDLE_MS = 120_000;
const OFFER_AAD = new TextEncoder().encode('agentferry upload offer');
const HASH_SLICE = 8 << 20;

const random = (n) => crypto.getRandomValues(new Uint8Array(n));

/// Send `file` through the upload link `invite` ({ id, key, expiresAt }) whose page `origin`
/// served. `onProgress(phase, done, total)` says how far hashing and sending are. Resolves with
/// the SHA-256 (hex) once the node confirmed the verified file.
export async function upload(invite, origin, file, onProgress = () => {}) {
  // The whole-file SHA-256 first: the trailer carries it, and a resumed request may ask for any
  // range, so it must be known before the first chunk goes.
  const hash = await fileHash();
  for (let at = 0; at < file.size; at += HASH_SLICE) {
    hash.update(new Uint8Array(await file.slice(at, at + HASH_SLICE).arrayBuffer()));
    onProgress('hashing', Math.min(at + HASH_SLICE, file.size), file.size);
  }
  const digest = hash.digest();
  const sha256 = hex(digest);

  const id = invite.id; // the node names the transfer by its link before a file is picked
  const key = random(32);
  const count = Math.ceil(file.size / CHUNK_SIZE);
  const socket = new RelaySocket(origin, mailboxKey(key, id, 'sender'));
  const toReceiver = mailboxId(mailboxKey(key, id, 'receiver'));
  await socket.connect();

  // The offer: this transfer's ticket, sealed under the link's key, into the link's mailbox.
  const offer = {
    transfer_id: hex(id),
    session_key: toBase64url(key),
    name: file.name,
    size: file.size,
    chunk_size: CHUNK_SIZE,
    expires_at: invite.expiresAt ?? Math.floor(Date.now() / 1000) + 3600,
  };
  const offerNonce = random(12);
  const offerCipher = await aead(derive(invite.key, 'upload-offer', invite.id));
  const sealedOffer = await offerCipher.seal(offerNonce, concat(OFFER_AAD, invite.id), new TextEncoder().encode(JSON.stringify(offer)));
  await socket.send(mailboxId(mailboxKey(invite.key, invite.id, 'upload')), concat(offerNonce, sealedOffer));

  // Serve the node's requests.
  const opener = new Opener(key, id, {});
  const manifest = new TextEncoder().encode(JSON.stringify({ name: file.name, size: file.size, chunk_size: CHUNK_SIZE, sha256 }));
  const state = { seal: null, next: 0, to: 0, trailer: false, sent: 0 };
  let pumping = null;
  let failed = null;
  // One pump at a time sends what the latest request allows; `pumping` is cleared in the same
  // step that finds nothing left to send, so a request that comes later always starts one.
  const pump = async () => {
    await null; // `pumping` is set before the loop runs
    try {
      while (state.seal && (state.next < state.to || (state.trailer && state.next === count))) {
        const seal = state.seal;
        if (state.next === count) {
          state.trailer = false;
          await socket.send(toReceiver, await seal(KIND.trailer, 0, count, digest));
          continue;
        }
        const index = state.next++;
        const bytes = new Uint8Array(await file.slice(index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE).arrayBuffer());
        await socket.send(toReceiver, await seal(KIND.chunk, index + 1 === count ? FLAG_LAST : 0, index, bytes));
        state.sent = Math.max(state.sent, state.next);
        onProgress('sending', Math.min(state.sent * CHUNK_SIZE, file.size), file.size);
        await socket.drain(SOCKET_AHEAD);
      }
    } catch (e) {
      failed = e instanceof ReceiveError ? e : new ReceiveError('save_failed', `the file cannot be read (${e.message})`);
    }
    pumping = null;
  };
  let heard = false;
  for (;;) {
    const message = await socket.take(heard ? IDLE_MS : ANSWER_MS);
    if (failed) throw failed;
    if (message === null && !heard) throw new ReceiveError('not_taken', 'no agent asked for the file the page offered');
    if (message === null) throw new ReceiveError('unreachable', 'the receiving agent stopped asking for the file');
    let control;
    try {
      const opened = await opener.open(message, 0);
      if (opened.kind !== KIND.control) continue;
      control = JSON.parse(new TextDecoder().decode(opened.payload));
      heard = true;
    } catch {
      continue; // not from the node: the relay, or anyone who learnt the mailbox id
    }
    if (control.op === 'hello') {
      const seal = await epochSealer(key, id);
      await socket.send(toReceiver, await seal(KIND.manifest, 0, 0, manifest));
    } else if (control.op === 'want' && Number.isSafeInteger(control.from) && Number.isSafeInteger(control.to)) {
      // A new request supersedes the previous one, under a fresh epoch: nothing is sealed twice.
      Object.assign(state, {
        seal: await epochSealer(key, id),
        next: Math.min(control.from, count),
        to: Math.min(control.to, count),
        trailer: control.to >= count,
      });
    } else if (control.op === 'credit' && state.seal && Number.isSafeInteger(control.to)) {
      state.to = Math.max(state.to, Math.min(control.to, count));
      state.trailer ||= control.to >= count;
    } else if (control.op === 'complete') {
      if (control.sha256 !== sha256) throw new ReceiveError('integrity', 'the agent received something else');
      await socket.close();
      return sha256;
    }
    if (!pumping) pumping = pump();
  }
}
