import { Lru } from './lru';
import { clipRanges, normalizeRanges, pushRange, subtractRanges, totalLength } from './ranges';

describe('range helpers', () => {
  it('merges touching and overlapping ranges', () => {
    expect(normalizeRanges([{ offset: 10, length: 5 }, { offset: 0, length: 10 }, { offset: 12, length: 10 }, { offset: 40, length: 0 }]))
      .toEqual([{ offset: 0, length: 22 }]);
    const list = [{ offset: 0, length: 4 }];
    pushRange(list, 4, 4);
    pushRange(list, 10, 2);
    expect(list).toEqual([{ offset: 0, length: 8 }, { offset: 10, length: 2 }]);
  });

  it('subtracts and clips', () => {
    const a = [{ offset: 0, length: 100 }, { offset: 200, length: 50 }];
    const b = [{ offset: 10, length: 10 }, { offset: 90, length: 120 }, { offset: 240, length: 5 }];
    expect(subtractRanges(a, b)).toEqual([{ offset: 0, length: 10 }, { offset: 20, length: 70 }, { offset: 210, length: 30 }, { offset: 245, length: 5 }]);
    expect(clipRanges(a, 220)).toEqual([{ offset: 0, length: 100 }, { offset: 200, length: 20 }]);
    expect(totalLength(a)).toBe(150);
  });
});

describe('Lru', () => {
  it('evicts the least recently used entry and shares concurrent loads', async () => {
    const lru = new Lru<number, string>(2);
    lru.set(1, 'a');
    lru.set(2, 'b');
    lru.get(1);
    lru.set(3, 'c');
    expect(lru.get(2)).toBeUndefined();
    expect(lru.get(1)).toBe('a');
    let loads = 0;
    const loader = async (): Promise<string> => {
      loads++;
      return 'x';
    };
    await Promise.all([lru.load(9, loader), lru.load(9, loader)]);
    expect(loads).toBe(1);
    expect(lru.size).toBe(2);
    await expect(lru.load(8, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(lru.get(8)).toBeUndefined();
  });
});
