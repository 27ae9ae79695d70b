import { sortedSlice } from './browser';

describe('sortedSlice', () => {
  const cmp = (a: { k: number; i: number }, b: { k: number; i: number }) => a.k - b.k;
  const items = Array.from({ length: 5000 }, (_, i) => ({ k: (i * 7919) % 1013, i })); // many ties

  it.each([
    [0, 100],
    [37, 50],
    [0, 1],
    [4990, 100],
    [0, 5000],
  ])('offset %d, limit %d equals a stable full sort', (offset, limit) => {
    const expected = [...items].sort(cmp).slice(offset, offset + limit);
    expect(sortedSlice(items, cmp, offset, limit)).toEqual(expected);
    const desc = (a: { k: number; i: number }, b: { k: number; i: number }) => cmp(b, a);
    expect(sortedSlice(items, desc, offset, limit)).toEqual([...items].sort(desc).slice(offset, offset + limit));
  });

  it('leaves its input alone', () => {
    const copy = [...items];
    sortedSlice(items, cmp, 0, 10);
    sortedSlice(items, cmp, 0, 5000);
    expect(items).toEqual(copy);
  });
});
