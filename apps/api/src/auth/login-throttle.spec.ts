import type { AppConfig } from '@vmkeep/config';
import { LoginThrottle } from './login-throttle';

const SETTINGS: AppConfig['api']['login'] = { freeFailures: 2, backoffMs: 1000, maxFailures: 5, maxFailuresPerAddress: 8, lockoutSeconds: 60 };

function throttle(): { t: LoginThrottle; advance: (ms: number) => void } {
  let clock = 1_000_000;
  const t = new LoginThrottle({ api: { login: SETTINGS } } as AppConfig);
  t.now = () => clock;
  return { t, advance: (ms) => (clock += ms) };
}

describe('LoginThrottle', () => {
  it('lets the free failures through, then doubles the wait, then locks out at the maximum', () => {
    const { t } = throttle();
    const waits = [1, 2, 3, 4, 5].map(() => t.failed('alice', '10.0.0.1'));
    expect(waits.map((w) => w.waitMs)).toEqual([0, 0, 1000, 2000, 60_000]);
    expect(waits.map((w) => w.lockedOut)).toEqual([[], [], [], [], ['username']]);
    expect(t.waitMs('alice', '10.0.0.2')).toBe(60_000);
    expect(t.waitMs('bob', '10.0.0.2')).toBe(0);
  });

  it('ends a wait when its time is up and forgets counts after a quiet lockout period', () => {
    const { t, advance } = throttle();
    for (let i = 0; i < 3; i++) t.failed('alice', 'a');
    expect(t.waitMs('alice', 'a')).toBe(1000);
    advance(400);
    expect(t.waitMs('alice', 'a')).toBe(600);
    advance(600);
    expect(t.waitMs('alice', 'a')).toBe(0);
    expect(t.failed('alice', 'a').waitMs).toBe(2000);
    advance(60_000);
    expect(t.failed('alice', 'a').waitMs).toBe(0);
  });

  it('counts a client address across usernames with its own maximum', () => {
    const { t } = throttle();
    const outcomes = Array.from({ length: 8 }, (_, i) => t.failed(`user${i}`, '192.0.2.7'));
    // 2 free failures + 3 more for the address's higher maximum (8 vs 5), then 1 s, 2 s, lockout.
    expect(outcomes.map((o) => o.waitMs)).toEqual([0, 0, 0, 0, 0, 1000, 2000, 60_000]);
    expect(outcomes[7]).toEqual({ waitMs: 60_000, lockedOut: ['address'] });
    expect(t.waitMs('someone-else', '192.0.2.7')).toBe(60_000);
    expect(t.waitMs('someone-else', '192.0.2.8')).toBe(0);
  });

  it('clears the username count on success but keeps the address count', () => {
    const { t } = throttle();
    for (let i = 0; i < 6; i++) t.failed('alice', 'a');
    expect(t.waitMs('alice', 'b')).toBe(60_000);
    t.succeeded('alice');
    expect(t.waitMs('alice', 'b')).toBe(0);
    expect(t.waitMs('alice', 'a')).toBe(1000);
  });
});
