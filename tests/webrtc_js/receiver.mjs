// An agentferry receiver on node-datachannel (libdatachannel): proves the WebRTC path is a
// standard data channel and its signalling and frames follow the documented formats. It speaks
// to a sender through a shared-folder channel, offers, reads the sealed frames off the data
// channel, opens them with Node's own AES-256-GCM, checks the whole-file SHA-256 against the
// sealed trailer, and confirms. Prints one JSON line: {ok, sha256, bytes, chunks, messages}.
// argv: FOLDER SESSION_KEY_HEX TRANSFER_ID_HEX SIZE CHUNK_SIZE
import ndc from 'node-datachannel';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const [folder, keyHex, idHex, sizeArg, chunkArg] = process.argv.slice(2);
const key = Buffer.from(keyHex, 'hex');
const id = Buffer.from(idHex, 'hex');
const size = Number(sizeArg), chunkSize = Number(chunkArg);
const chunkCount = Math.ceil(size / chunkSize);
const fail = (why) => { console.log(JSON.stringify({ ok: false, error: why })); process.exit(1); };

// Key derivation (src/crypto.rs): HKDF-SHA256, salt "agentferry v1", info label ‖ 0 ‖ id ‖ extra.
const derive = (label, extra = Buffer.alloc(0)) => Buffer.from(crypto.hkdfSync(
  'sha256', key, Buffer.from('agentferry v1'), Buffer.concat([Buffer.from(label), Buffer.from([0]), id, extra]), 32));
// Folder channel (src/channel/folder.rs): a mailbox is a folder named by hex(route(mailbox key)).
const route = (mailboxKey) => crypto.createHash('sha256')
  .update(Buffer.from('agentferry relay mailbox v1\0')).update(mailboxKey).digest('hex');
const mailboxDir = (side) => path.join(folder, route(derive('relay-mailbox', Buffer.from(side))));
function post(side, payload) {
  const dir = mailboxDir(side); fs.mkdirSync(dir, { recursive: true });
  const name = `${String(BigInt(Date.now()) * 1000000n).padStart(24, '0')}-${crypto.randomBytes(6).toString('hex')}.msg`;
  fs.writeFileSync(path.join(dir, `.${name}.tmp`), payload);
  fs.renameSync(path.join(dir, `.${name}.tmp`), path.join(dir, name));
}
async function take(side) {
  const dir = mailboxDir(side); fs.mkdirSync(dir, { recursive: true });
  for (;;) {
    const names = fs.readdirSync(dir).filter((n) => n.endsWith('.msg')).sort();
    if (names.length) { const p = path.join(dir, names[0]); const data = fs.readFileSync(p); fs.unlinkSync(p); return data; }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Signalling (src/transport/webrtc/signal.rs): 1 ‖ nonce ‖ AES-256-GCM(JSON), direction in the AAD.
const signalKey = derive('webrtc-signal');
function sealSignal(obj) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', signalKey, nonce);
  c.setAAD(Buffer.from('agentferry webrtc offer'));
  const body = Buffer.concat([c.update(JSON.stringify(obj)), c.final(), c.getAuthTag()]);
  return Buffer.concat([Buffer.from([1]), nonce, body]);
}
function openSignal(buf) {
  const d = crypto.createDecipheriv('aes-256-gcm', signalKey, buf.subarray(1, 13));
  d.setAAD(Buffer.from('agentferry webrtc answer'));
  d.setAuthTag(buf.subarray(buf.length - 16));
  return JSON.parse(Buffer.concat([d.update(buf.subarray(13, buf.length - 16)), d.final()]).toString());
}

// Frames (src/frame.rs): 32-byte header, nonce kind ‖ 000 ‖ index, AAD transfer id ‖ header.
const frameKey = (epoch) => derive('frame-key', epoch);
function nonceOf(kind, index) { const n = Buffer.alloc(12); n[0] = kind; n.writeBigUInt64BE(BigInt(index), 4); return n; }
const myEpoch = crypto.randomBytes(16); let sequence = 0;
function sealControl(control) {
  sequence += 1;
  const plain = Buffer.from(JSON.stringify(control));
  const header = Buffer.alloc(32); header[0] = 4; header.writeUInt32BE(plain.length + 16, 4);
  header.writeBigUInt64BE(BigInt(sequence), 8); myEpoch.copy(header, 16);
  const c = crypto.createCipheriv('aes-256-gcm', frameKey(myEpoch), nonceOf(4, sequence));
  c.setAAD(Buffer.concat([id, header]));
  return Buffer.concat([header, c.update(plain), c.final(), c.getAuthTag()]);
}
function openFrame(frame) {
  const header = frame.subarray(0, 32), kind = header[0], index = header.readBigUInt64BE(8);
  const d = crypto.createDecipheriv('aes-256-gcm', frameKey(header.subarray(16, 32)), nonceOf(kind, index));
  d.setAAD(Buffer.concat([id, header])); d.setAuthTag(frame.subarray(frame.length - 16));
  return { kind, index: Number(index), payload: Buffer.concat([d.update(frame.subarray(32, frame.length - 16)), d.final()]) };
}

// Connection attempts, as the CLI receiver makes them: an offer whose data channel has not
// opened within OPEN_MS is given up and a new one made (the sender answers each new attempt id
// and drops the previous connection). `stage` says how far the transfer got, for a timeout.
const OPEN_MS = 10000;
let current = null, stage = 'gathering';
setTimeout(() => fail(`timeout (stage: ${stage}, attempts: ${current?.number})`), Number(process.env.TIMEOUT_MS ?? 60000));
function connect() {
  const number = (current?.number ?? 0) + 1;
  current?.pc.close();
  const pc = new ndc.PeerConnection(`receiver-${number}`, { iceServers: [], maxMessageSize: 262144 });
  const attempt = crypto.randomBytes(16).toString('hex');
  const retry = setTimeout(connect, OPEN_MS);
  current = { number, pc, attempt };
  stage = `gathering, attempt ${number}`;
  pc.onGatheringStateChange((state) => {
    if (state !== 'complete' || current.pc !== pc) return;
    post('webrtc-offer', sealSignal({ attempt, type: 'offer', sdp: pc.localDescription().sdp }));
    stage = `offered, attempt ${number}`;
  });
  const dc = pc.createDataChannel('agentferry', { ordered: true });
  dc.onOpen(() => {
    clearTimeout(retry);
    stage = 'open';
    dc.sendMessageBinary(sealControl({ op: 'hello' }));
  });
  dc.onMessage((m) => receive(dc, m));
}
// One reader of the answer mailbox, for every attempt: an answer to an earlier attempt is stale.
(async () => {
  for (;;) {
    const answer = openSignal(await take('webrtc-answer'));
    if (answer.type !== 'answer') fail(`sender said ${answer.type}`);
    if (answer.attempt === current.attempt) {
      current.pc.setRemoteDescription(answer.sdp, 'answer');
      stage = `answered, attempt ${current.number}`;
    }
  }
})();
const hash = crypto.createHash('sha256');
let pending = Buffer.alloc(0), nextChunk = 0, messages = 0, bytes = 0;
function receive(dc, m) {
  messages += 1;
  pending = Buffer.concat([pending, Buffer.from(m)]);
  while (pending.length >= 32 && pending.length >= 32 + pending.readUInt32BE(4)) {
    const len = 32 + pending.readUInt32BE(4);
    const frame = openFrame(pending.subarray(0, len)); pending = pending.subarray(len);
    if (frame.kind === 3) { dc.sendMessageBinary(sealControl({ op: 'want', from: 0, to: chunkCount })); continue; }
    if (frame.kind === 1) {
      if (frame.index !== nextChunk) fail(`chunk ${frame.index} out of order`);
      hash.update(frame.payload); bytes += frame.payload.length; nextChunk += 1; stage = `chunk ${nextChunk}`; continue;
    }
    if (frame.kind === 2) {
      const sha256 = hash.digest('hex');
      const ok = nextChunk === chunkCount && bytes === size && frame.payload.toString('hex') === sha256;
      dc.sendMessageBinary(sealControl({ op: 'complete', sha256 }));
      console.log(JSON.stringify({ ok, sha256, bytes, chunks: nextChunk, messages }));
      // Exiting at once could drop the confirmation before SCTP sent it; whether it arrived is
      // for the sender's exit status to say (the test reads it).
      setTimeout(() => process.exit(ok ? 0 : 1), 500);
    }
  }
}
connect();
