import { bytes, items, mbPerSecond, table } from './format';

describe('format', () => {
  it('aligns table columns and says (none) for no rows', () => {
    expect(table(['ID', 'NAME'], [['1', 'alpha'], ['22', null]])).toBe('ID  NAME\n1   alpha\n22');
    expect(table(['ID'], [])).toBe('(none)');
  });

  it('renders sizes and speeds', () => {
    expect(bytes(512)).toBe('512 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(bytes(undefined)).toBe('');
    expect(mbPerSecond(12_500_000)).toBe('12.5 MB/s');
  });

  it('accepts lists as arrays or { items }', () => {
    expect(items([1, 2])).toEqual([1, 2]);
    expect(items({ items: [3] })).toEqual([3]);
  });
});
