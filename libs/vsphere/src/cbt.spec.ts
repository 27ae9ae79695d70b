import { collectChangedAreas, parseDiskChangeInfo, type DiskChangeInfo } from './cbt';
import { VsphereError } from './errors';

describe('parseDiskChangeInfo', () => {
  it('reads, sorts and merges the areas (numbers arrive as text)', () => {
    const info = parseDiskChangeInfo(
      {
        startOffset: '0',
        length: '1000',
        changedArea: [
          { start: '500', length: '100' },
          { start: '0', length: '10' },
          { start: '550', length: '100' },
          { start: '900', length: '0' },
        ],
      },
      'test',
    );
    expect(info).toEqual({ startOffset: 0, length: 1000, changedAreas: [{ offset: 0, length: 10 }, { offset: 500, length: 150 }] });
  });

  it('takes a single area and no area', () => {
    expect(parseDiskChangeInfo({ startOffset: '64', length: '64', changedArea: { start: '70', length: '2' } }, 't').changedAreas).toEqual([
      { offset: 70, length: 2 },
    ]);
    expect(parseDiskChangeInfo({ startOffset: '0', length: '5' }, 't').changedAreas).toEqual([]);
  });

  it('refuses answers that cover nothing or report areas outside what they cover', () => {
    expect(() => parseDiskChangeInfo({ startOffset: '0', length: '0' }, 'vm-1')).toThrow(VsphereError);
    expect(() => parseDiskChangeInfo({}, 'vm-1')).toThrow(/without a valid startOffset/);
    expect(() => parseDiskChangeInfo({ startOffset: '10', length: '10', changedArea: { start: '15', length: '10' } }, 'vm-1')).toThrow(
      /outside \[10, 20\)/,
    );
  });
});

describe('collectChangedAreas', () => {
  const pages = (page: number, areas: Record<number, { offset: number; length: number }[]>) => {
    const asked: number[] = [];
    const query = async (start: number): Promise<DiskChangeInfo> => {
      asked.push(start);
      return { startOffset: start, length: page, changedAreas: areas[start] ?? [] };
    };
    return { asked, query };
  };

  it('asks page after page until the capacity is covered and clips the last page', async () => {
    const { asked, query } = pages(40, { 0: [{ offset: 5, length: 5 }], 80: [{ offset: 90, length: 40 }] });
    const result = await collectChangedAreas(query, 100, 't');
    expect(asked).toEqual([0, 40, 80]);
    expect(result).toEqual({ calls: 3, areas: [{ offset: 5, length: 5 }, { offset: 90, length: 10 }] });
  });

  it('refuses an answer for another offset', async () => {
    await expect(collectChangedAreas(async () => ({ startOffset: 7, length: 10, changedAreas: [] }), 100, 'disk 2000')).rejects.toThrow(
      /answered for offset 7, asked for 0/,
    );
  });
});
