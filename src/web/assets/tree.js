// A folder in the page: its byte stream (src/tree/mod.rs) read as it arrives into a zip the
// person downloads once the folder's digest matched. No DOM here; app.js hands the zip over.
//
// The stream is the listing (src/tree/listing.rs), then every file's bytes in listing order. The
// listing is checked before any entry is taken in, as the CLI receiver checks it: a path that is
// absolute, empty, has a `.`/`..`/empty component, a backslash, a control or bidi character,
// comes before its folder or collides with another (ignoring case) refuses the whole folder, so
// no zip this page makes can write outside its folder when unpacked. The folder's digest is
// SHA-256(listing ‖ SHA-256(file₁) ‖ … ‖ SHA-256(fileₙ)) (src/tree/digest.rs).
//
// The zip stores files uncompressed (they are often compressed already, and it keeps the page's
// CPU for decrypting), with each file's CRC-32 after its data, names in UTF-8 under the folder's
// name, and Unix modes. It is built in the tab's memory and has no ZIP64 records, so a folder of
// 2 GiB or more, or of 65 535 entries or more, is refused up front: the CLI receives those.

import { ReceiveError, concat, safeName } from './protocol.js';
import { createCRC32, createSHA256 } from './vendor.js';

const MAGIC = 'AFTREE1\n';
const HEADER_LEN = 8 + 8 + 4 + 2;
const MAX_ENTRIES = 65534;
const MAX_LISTING_BYTES = 32 << 20;
const MAX_PATH_BYTES = 4096;
/// Far enough below ZIP's 4 GiB offsets for every header a folder of 65 534 entries adds.
const ZIP_LIMIT = 2 ** 31;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const refused = (why) => new ReceiveError('listing_refused', `the folder's listing is refused: ${why}`);

/// The checked entries of a listing: [{ path, dir, mode, size }], parents before children.
export function decodeListing(bytes, streamSize) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const count = view.getUint32(16);
  if (count > MAX_ENTRIES) throw refused(`it lists ${count} entries; a page takes at most ${MAX_ENTRIES}`);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = [];
  const seen = new Set();
  const dirs = new Set();
  let at = HEADER_LEN;
  let total = bytes.length;
  const take = (n) => {
    if (at + n > bytes.length) throw refused('an entry runs past the end of the listing');
    at += n;
    return at - n;
  };
  for (let i = 0; i < count; i++) {
    const kind = bytes[take(1)];
    if (kind > 1) throw refused(`unknown entry kind ${kind}`);
    const mode = view.getUint16(take(2)) & 0o777;
    const size = Number(view.getBigUint64(take(8)));
    const pathLen = view.getUint16(take(2));
    const start = take(pathLen);
    let raw;
    try {
      raw = decoder.decode(bytes.subarray(start, start + pathLen));
    } catch {
      throw refused('a path is not UTF-8');
    }
    const path = reducePath(raw);
    const dir = kind === 0;
    if (dir && size !== 0) throw refused(`the folder ${JSON.stringify(path)} declares ${size} bytes`);
    const folded = path.toLowerCase();
    const parent = folded.includes('/') ? folded.slice(0, folded.lastIndexOf('/')) : null;
    if (parent !== null && !dirs.has(parent)) throw refused(`${JSON.stringify(path)} comes before its folder`);
    if (seen.has(folded)) throw refused(`${JSON.stringify(path)} collides with another entry (ignoring case)`);
    seen.add(folded);
    if (dir) dirs.add(folded);
    total += size;
    entries.push({ path, dir, mode, size });
  }
  if (at !== bytes.length) throw refused('bytes are left over after the last entry');
  if (total !== streamSize) throw refused(`the listing and its files add up to ${total} bytes; the stream has ${streamSize}`);
  return entries;
}

function reducePath(raw) {
  if (!raw || new TextEncoder().encode(raw).length > MAX_PATH_BYTES) throw refused('a path is empty or too long');
  if (raw.startsWith('/')) throw refused(`${JSON.stringify(raw)} is absolute`);
  return raw
    .split('/')
    .map((part) => {
      if (part === '' || part === '.' || part === '..') throw refused(`${JSON.stringify(raw)} has an empty, . or .. component`);
      if (part.includes('\\') || CONTROL.test(part) || BIDI.test(part)) {
        throw refused(`${JSON.stringify(raw)} holds a backslash, a control or a bidi control character`);
      }
      return safeName(part);
    })
    .join('/');
}

/// A zip record from its fields: [2, u16] and [4, u32] little-endian, [0, bytes] as they are.
function record(fields) {
  const widthOf = ([width, value]) => width || value.length;
  const out = new Uint8Array(fields.reduce((n, field) => n + widthOf(field), 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const field of fields) {
    const [width, value] = field;
    if (width === 2) view.setUint16(at, value, true);
    else if (width === 4) view.setUint32(at, value, true);
    else out.set(value, at);
    at += widthOf(field);
  }
  return out;
}

/// A sink for a folder's stream (see Transfer.fetch in protocol.js) that brings its own digest:
/// `write` takes the stream's bytes in order, `digest()` is the folder's digest once they are
/// all in, and `zip()` the zip's parts (for a Blob) after that.
export class FolderZip {
  static async create(root, streamSize) {
    if (streamSize >= ZIP_LIMIT) throw new ReceiveError('unsupported', 'this folder is 2 GiB or more: receive it with the agentferry CLI');
    return new FolderZip(safeName(root), streamSize, await createSHA256(), await createSHA256(), await createCRC32());
  }

  constructor(root, streamSize, outer, file, crc) {
    Object.assign(this, { root, streamSize, outer, file, crc, head: new Uint8Array(0), entries: null });
    Object.assign(this, { parts: [], central: [], offset: 0, current: null, left: 0, next: 0 });
    outer.init();
  }

  async write(bytes) {
    if (this.entries === null) {
      this.head = concat(this.head, bytes);
      if (this.head.length < HEADER_LEN) return;
      const len = this.listingLen();
      if (this.head.length < len) return;
      const listing = this.head.subarray(0, len);
      this.entries = decodeListing(listing, this.streamSize);
      this.outer.update(listing);
      bytes = this.head.subarray(len);
      this.head = null;
    }
    for (;;) {
      if (this.current === null && !this.open()) {
        if (bytes.length) throw new ReceiveError('tampered', 'bytes after the last file');
        return;
      }
      const piece = bytes.subarray(0, this.left);
      bytes = bytes.subarray(piece.length);
      this.file.update(piece);
      this.crc.update(piece);
      this.emit(piece);
      this.left -= piece.length;
      if (this.left > 0) return;
      this.close();
      if (!bytes.length && this.next >= this.entries.length) return;
    }
  }

  listingLen() {
    const text = new TextDecoder().decode(this.head.subarray(0, 8));
    if (text !== MAGIC) throw refused('the stream does not start with a folder listing');
    const len = Number(new DataView(this.head.buffer, this.head.byteOffset + 8, 8).getBigUint64(0));
    if (len < HEADER_LEN || len > MAX_LISTING_BYTES || len > this.streamSize) throw refused(`it declares ${len} bytes`);
    return len;
  }

  /// Start the next file, writing the entries (folders) before it; false when none is left.
  open() {
    while (this.next < this.entries.length) {
      const entry = this.entries[this.next++];
      this.local(entry);
      if (!entry.dir) {
        this.current = entry;
        this.left = entry.size;
        this.file.init();
        this.crc.init();
        if (entry.size === 0) {
          this.close();
          continue;
        }
        return true;
      }
    }
    return false;
  }

  local(entry) {
    const name = new TextEncoder().encode(`${this.root}/${entry.path}${entry.dir ? '/' : ''}`);
    entry.name = name;
    entry.offset = this.offset;
    // Version 2.0; bit 3: sizes and CRC follow the data; bit 11: UTF-8 names. Stored.
    this.emit(record([[4, 0x04034b50], [2, 20], [2, 0x0808], [2, 0], [2, 0], [2, 0x21], [4, 0], [4, 0], [4, 0], [2, name.length], [2, 0], [0, name]]));
  }

  close() {
    const entry = this.current;
    this.current = null;
    entry.crc = parseInt(this.crc.digest('hex'), 16) >>> 0;
    this.outer.update(this.file.digest('binary'));
    this.emit(record([[4, 0x08074b50], [4, entry.crc], [4, entry.size], [4, entry.size]]));
  }

  emit(part) {
    this.parts.push(part);
    this.offset += part.length;
  }

  async digest() {
    if (this.entries === null || this.current !== null || this.open()) throw new ReceiveError('tampered', 'the folder stream ended early');
    return this.outer.digest('binary');
  }

  /// The zip's parts: the entries, then the central directory and its end.
  zip() {
    const start = this.offset;
    for (const e of this.entries) {
      const attrs = ((e.dir ? 0o040000 : 0o100000) | e.mode) * 65536 + (e.dir ? 0x10 : 0);
      this.emit(record([
        [4, 0x02014b50], [2, (3 << 8) | 20], [2, 20], [2, 0x0808], [2, 0], [2, 0], [2, 0x21],
        [4, e.crc ?? 0], [4, e.size], [4, e.size], [2, e.name.length], [2, 0], [2, 0], [2, 0], [2, 0],
        [4, attrs >>> 0], [4, e.offset], [0, e.name],
      ]));
    }
    const size = this.offset - start;
    const n = this.entries.length;
    this.emit(record([[4, 0x06054b50], [2, 0], [2, 0], [2, n], [2, n], [4, size], [4, start], [2, 0]]));
    return this.parts;
  }
}
