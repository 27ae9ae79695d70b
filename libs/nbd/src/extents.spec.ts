import { piecesOf } from './extents';

describe('piecesOf', () => {
  const extents = [
    { offset: 100, length: 50 },
    { offset: 150, length: 10 },
    { offset: 300, length: 100 },
  ];

  it('splits a range into data and holes, joining touching extents', () => {
    expect(piecesOf(extents, 0, 500)).toEqual([
      { offset: 0, length: 100, hole: true },
      { offset: 100, length: 60, hole: false },
      { offset: 160, length: 140, hole: true },
      { offset: 300, length: 100, hole: false },
      { offset: 400, length: 100, hole: true },
    ]);
  });

  it('clips to the range and honours the piece limit', () => {
    expect(piecesOf(extents, 120, 200)).toEqual([
      { offset: 120, length: 40, hole: false },
      { offset: 160, length: 140, hole: true },
      { offset: 300, length: 20, hole: false },
    ]);
    expect(piecesOf(extents, 10, 400, 1)).toEqual([{ offset: 10, length: 90, hole: true }]);
    expect(piecesOf([], 0, 10)).toEqual([{ offset: 0, length: 10, hole: true }]);
  });
});
