// The page's folder listing checks (src/web/assets/tree.js), run in Node against listings a
// hostile sender could seal: each must be refused before any entry is taken in. Prints one JSON
// line: { accepted: [paths of the good listing], refused: { case: error code } }.

import { decodeListing } from '../../src/web/assets/tree.js';

/// A listing as src/tree/listing.rs encodes it; entries are [kind, path, size].
function encode(entries, { count = entries.length, extra = 0 } = {}) {
  const enc = new TextEncoder();
  const bodies = entries.map(([kind, path, size]) => {
    const name = enc.encode(path);
    const b = new Uint8Array(13 + name.length);
    const v = new DataView(b.buffer);
    b[0] = kind === 'dir' ? 0 : 1;
    v.setUint16(1, 0o644);
    v.setBigUint64(3, BigInt(size));
    v.setUint16(11, name.length);
    b.set(name, 13);
    return b;
  });
  const len = 22 + bodies.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  out.set(enc.encode('AFTREE1\n'));
  v.setBigUint64(8, BigInt(len));
  v.setUint32(16, count);
  v.setUint16(20, 0o755);
  let at = 22;
  for (const b of bodies) {
    out.set(b, at);
    at += b.length;
  }
  const size = len + entries.reduce((n, [, , s]) => n + s, 0) + extra;
  return [out, size];
}

const verdict = (entries, options) => {
  try {
    decodeListing(...encode(entries, options));
    return 'accepted';
  } catch (e) {
    return e.code ?? String(e);
  }
};

const good = [['dir', 'a', 0], ['file', 'a/b.txt', 5], ['dir', 'a/c', 0]];
const cases = {
  parent: [['file', '../evil', 1]],
  inner_parent: [['dir', 'a', 0], ['file', 'a/../../evil', 1]],
  absolute: [['file', '/etc/passwd', 1]],
  dot: [['file', './x', 1]],
  empty_component: [['dir', 'a', 0], ['file', 'a//x', 1]],
  backslash: [['file', '..\\evil', 1]],
  control: [['file', 'x\u0007', 1]],
  bidi: [['file', 'gpj.\u202eexe', 1]],
  child_first: [['file', 'a/b', 1], ['dir', 'a', 0]],
  file_as_parent: [['file', 'a', 1], ['file', 'a/b', 1]],
  case_collision: [['file', 'Readme', 1], ['file', 'README', 1]],
  folder_with_bytes: [['dir', 'a', 7]],
};
const refused = Object.fromEntries(Object.entries(cases).map(([name, entries]) => [name, verdict(entries)]));
refused.sizes_disagree = verdict(good, { extra: 3 });
refused.too_few_entries = verdict(good, { count: 2 });
const accepted = decodeListing(...encode(good)).map((e) => e.path);
console.log(JSON.stringify({ accepted, refused }));
