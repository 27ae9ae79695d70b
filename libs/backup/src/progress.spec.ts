import { ProgressTracker, type ProgressUpdate } from './progress';

describe('ProgressTracker', () => {
  let now: number;
  let writes: ProgressUpdate[];
  const tracker = (total: number, write?: (u: ProgressUpdate) => Promise<void>) =>
    new ProgressTracker(total, write ?? (async (u) => void writes.push(u)), (err) => {
      throw err;
    }, 1000, () => now);

  beforeEach(() => {
    now = 10_000;
    writes = [];
  });

  it('writes at most once per interval and always on drain', async () => {
    const t = tracker(4000);
    t.update(0, 'reading disk 1');
    now += 200;
    t.update(500);
    now += 300;
    t.update(1000);
    now += 600; // 1.1 s after the first write
    t.update(2000);
    await t.drain();
    expect(writes.map((w) => w.bytesDone)).toEqual([0, 2000, 2000]);
    expect(writes[1]).toEqual({ progress: 50, bytesDone: 2000, bytesTotal: 4000, speed: 1818, phase: 'reading disk 1' });
  });

  it('never goes backwards nor past the total', async () => {
    const t = tracker(100);
    t.update(80);
    t.update(50);
    t.update(500, 'done');
    await t.drain();
    expect(t.snapshot()).toMatchObject({ bytesDone: 100, progress: 100, phase: 'done' });
  });

  it('reports 100 % for an empty job and survives a failing write', async () => {
    const errors: unknown[] = [];
    const t = new ProgressTracker(0, async () => Promise.reject(new Error('db down')), (e) => errors.push(e), 1000, () => now);
    t.update(0);
    await t.drain();
    expect(t.snapshot().progress).toBe(100);
    expect(errors.map((e) => (e as Error).message)).toEqual(['db down', 'db down']);
  });

  it('serialises writes: a slow write is never overtaken', async () => {
    const order: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const t = tracker(10, async (u) => {
      if (u.bytesDone === 1) await gate;
      order.push(u.bytesDone);
    });
    t.update(1);
    now += 1000;
    t.update(2);
    const drained = t.drain();
    release();
    await drained;
    expect(order).toEqual([1, 2, 2]);
  });
});
