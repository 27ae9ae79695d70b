import { paxRecord, TAR_BLOCK, tarFileHeader, tarPadding } from './tar';

function checksumOk(header: Buffer): boolean {
  const stored = parseInt(header.toString('latin1', 148, 154), 8);
  const copy = Buffer.from(header);
  copy.fill(0x20, 148, 156);
  return stored === copy.reduce((s, b) => s + b, 0);
}

describe('tar headers', () => {
  it('writes a ustar header with octal size and a valid checksum', () => {
    const h = tarFileHeader('vm.ovf', 1234, 1700000000);
    expect(h.length).toBe(TAR_BLOCK);
    expect(h.toString('latin1', 0, 6)).toBe('vm.ovf');
    expect(h.toString('latin1', 124, 135)).toBe((1234).toString(8).padStart(11, '0'));
    expect(h.toString('latin1', 156, 157)).toBe('0');
    expect(h.toString('latin1', 257, 263)).toBe('ustar\0');
    expect(checksumOk(h)).toBe(true);
  });

  it('adds a pax size record for members of 8 GiB and more', () => {
    const size = 9 * 2 ** 30 + 17;
    const h = tarFileHeader('disk.vmdk', size);
    expect(h.length).toBe(3 * TAR_BLOCK);
    expect(h.toString('latin1', 156, 157)).toBe('x');
    const record = h.toString('latin1', TAR_BLOCK, TAR_BLOCK + 40).split('\0')[0];
    expect(record).toBe(paxRecord('size', String(size)));
    expect(checksumOk(h.subarray(0, TAR_BLOCK))).toBe(true);
    expect(checksumOk(h.subarray(2 * TAR_BLOCK))).toBe(true);
  });

  it('pax records count their own length', () => {
    for (const value of ['1', '9'.repeat(85), '9'.repeat(95)]) {
      const r = paxRecord('size', value);
      expect(Number(r.split(' ')[0])).toBe(Buffer.byteLength(r));
    }
    expect(tarPadding(0)).toBe(0);
    expect(tarPadding(513)).toBe(511);
  });

  it('refuses member names tar cannot hold', () => {
    expect(() => tarFileHeader('a/b', 1)).toThrow('cannot be an OVA member name');
    expect(() => tarFileHeader('x'.repeat(101), 1)).toThrow('cannot be an OVA member name');
  });
});
