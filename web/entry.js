// The vendored part of the browser page: only what src/web/assets/protocol.js imports.
export { sha256 } from '@noble/hashes/sha2.js';
export { hkdf } from '@noble/hashes/hkdf.js';
export { gcm } from '@noble/ciphers/aes.js';
export { scryptAsync } from '@noble/hashes/scrypt.js';
export { createCRC32, createSHA256 } from 'hash-wasm';
