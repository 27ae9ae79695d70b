import { crc32c, crc32cWithZeroedField } from './crc32c';

describe('crc32c', () => {
  it('matches the published check value and RFC 3720 test vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    const ascending = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    expect(crc32c(ascending)).toBe(0x46dd794e);
  });

  it('continues across buffers and ignores the checksum field itself', () => {
    const data = Buffer.from('vhdx header checksum test data');
    expect(crc32c(data.subarray(10), crc32c(data.subarray(0, 10)))).toBe(crc32c(data));
    const a = Buffer.from(data);
    const b = Buffer.from(data);
    b.writeUInt32LE(0xdeadbeef, 4);
    expect(crc32cWithZeroedField(a, 4)).toBe(crc32cWithZeroedField(b, 4));
    expect(crc32cWithZeroedField(a, 4)).not.toBe(crc32c(a));
  });
});
