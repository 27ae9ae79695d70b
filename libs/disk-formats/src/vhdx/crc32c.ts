/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by every VHDX checksum. */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C of `data`; pass the previous result as `crc` to continue over several buffers. */
export function crc32c(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * CRC-32C of a structure whose own 4-byte checksum field (at `checksumOffset`) counts as zero, which is how
 * VHDX headers, region tables and log entries are summed.
 */
export function crc32cWithZeroedField(data: Buffer, checksumOffset: number): number {
  const copy = Buffer.from(data);
  copy.writeUInt32LE(0, checksumOffset);
  return crc32c(copy);
}
