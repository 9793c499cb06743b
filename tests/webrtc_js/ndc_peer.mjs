// node-datachannel <-> node-datachannel throughput peer: the reference bench/webrtc.py measures
// our WebRTC path against, on the same routes. Non-trickle signalling over stdin/stdout: each
// side prints its description as one JSON line ({"type","sdp"}) once gathering completes and
// reads the other's from stdin. The offerer sends BYTES in 64 KiB messages on one ordered,
// reliable channel, keeping at most 4 MiB buffered (resumes below 1 MiB); the answerer counts
// them and answers "done" when it has all. The offerer then prints one JSON result line on stderr:
// {"bytes", "seconds" (open to done), "setup_ms" (start to open), "pair"}.
// argv: offer|answer BYTES; env ICE_SERVERS (JSON list of URLs), POLICY (all|relay).
import ndc from 'node-datachannel';
import readline from 'node:readline';

const [role, bytesArg] = process.argv.slice(2);
const total = Number(bytesArg);
const MESSAGE = 64 * 1024, HIGH = 4 << 20, LOW = 1 << 20;
ndc.initLogger('Error', (level, message) => console.error('[ndc]', level, message));
const pc = new ndc.PeerConnection(role, {
  iceServers: JSON.parse(process.env.ICE_SERVERS ?? '[]'),
  iceTransportPolicy: process.env.POLICY ?? 'all',
  maxMessageSize: 262144,
});
pc.onGatheringStateChange((state) => {
  if (state === 'complete') {
    const d = pc.localDescription();
    console.log(JSON.stringify({ type: d.type, sdp: d.sdp }));
  }
});
readline.createInterface({ input: process.stdin }).once('line', (line) => {
  const d = JSON.parse(line);
  pc.setRemoteDescription(d.sdp, d.type);
});
const pair = () => {
  const p = pc.getSelectedCandidatePair();
  return p ? `${p.local.type}<->${p.remote.type}` : 'none';
};
const started = Date.now();
if (role === 'offer') {
  const dc = pc.createDataChannel('bench');
  const block = Buffer.alloc(MESSAGE, 7);
  let sent = 0, opened = 0;
  const pump = () => {
    while (sent < total && dc.bufferedAmount() < HIGH) {
      const n = Math.min(MESSAGE, total - sent);
      dc.sendMessageBinary(n === MESSAGE ? block : block.subarray(0, n));
      sent += n;
    }
  };
  dc.setBufferedAmountLowThreshold(LOW);
  dc.onBufferedAmountLow(pump);
  dc.onOpen(() => { opened = Date.now(); pump(); });
  dc.onMessage((m) => {
    if (m === 'done') {
      const result = { bytes: total, seconds: (Date.now() - opened) / 1000, setup_ms: opened - started, pair: pair() };
      console.error(JSON.stringify(result));
      pc.close();
      process.exit(0);
    }
  });
} else {
  pc.onDataChannel((dc) => {
    let got = 0;
    dc.onMessage((m) => {
      got += m.length ?? m.byteLength;
      if (got >= total) {
        dc.sendMessage('done');
        setTimeout(() => process.exit(0), 500);
      }
    });
  });
}
setTimeout(() => { console.error(JSON.stringify({ error: 'timeout', pair: pair() })); process.exit(2); },
  Number(process.env.TIMEOUT_MS ?? 600000));
