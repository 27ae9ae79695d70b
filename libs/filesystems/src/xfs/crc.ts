/** XFS v5 metadata checksums: CRC-32C of the structure with its own 4-byte field counted as zero, stored little-endian. */
import { crc32c } from '@vmkeep/disk-formats';

export function crcOk(data: Buffer, crcOffset: number): boolean {
  const copy = Buffer.from(data);
  copy.writeUInt32LE(0, crcOffset);
  return crc32c(copy) === data.readUInt32LE(crcOffset);
}
