import { SpareBuffers } from './spare-buffers';

describe('SpareBuffers', () => {
  it('hands a kept buffer out once, for its exact length only', () => {
    const spares = new SpareBuffers();
    const b = Buffer.allocUnsafeSlow(4096);
    spares.give(b);
    expect(spares.take(4095)).toBeUndefined();
    expect(spares.take(4096)).toBe(b);
    expect(spares.take(4096)).toBeUndefined();
  });

  it('keeps no view, no empty buffer, nothing beyond its limit, and nothing after clear()', () => {
    const spares = new SpareBuffers(2);
    const whole = Buffer.allocUnsafeSlow(8192);
    spares.give(whole.subarray(0, 4096));
    spares.give(whole.subarray(4096));
    spares.give(Buffer.alloc(0));
    expect(spares.take(4096)).toBeUndefined();
    const kept = [Buffer.allocUnsafeSlow(16), Buffer.allocUnsafeSlow(16), Buffer.allocUnsafeSlow(16)];
    for (const b of kept) spares.give(b);
    expect(spares.take(16)).toBe(kept[0]);
    expect(spares.take(16)).toBe(kept[1]);
    expect(spares.take(16)).toBeUndefined();
    spares.give(kept[2]);
    spares.clear();
    expect(spares.take(16)).toBeUndefined();
  });
});
