import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig, LoginThrottleConfig } from '@vmkeep/config';

/** What one more failed login did to a key (a username or a client address). */
export interface FailureOutcome {
  /** Milliseconds until the next login attempt is allowed for this username/address pair (0 = at once). */
  waitMs: number;
  /** Which keys this failure locked out (their count reached the maximum). */
  lockedOut: Array<'username' | 'address'>;
}

interface Counter {
  failures: number;
  blockedUntil: number;
  lastFailure: number;
}

/** Forget old counters once the table holds this many keys, so a flood of made-up usernames cannot grow memory. */
const PRUNE_AT = 10_000;

/**
 * Brute-force brake of the login route, counted separately per username and per client address: the first
 * `freeFailures` failures cost nothing, every further one makes the caller wait `backoffMs`, doubling each time,
 * and reaching the maximum locks the key out for `lockoutSeconds`. Counts are forgotten after `lockoutSeconds`
 * without a failure; a successful login clears the username's count (not the address's, so one valid account
 * cannot launder an address that guesses at others). Attempts refused while waiting are not counted, so a
 * lockout ends when it says it does. State lives in this process.
 */
@Injectable()
export class LoginThrottle {
  private readonly counters = new Map<string, Counter>();
  private readonly settings: LoginThrottleConfig;

  /** The clock; tests replace it. */
  now: () => number = Date.now;

  constructor(@Inject(APP_CONFIG) config: Pick<AppConfig, 'api'>) {
    this.settings = config.api.login;
  }

  /** Milliseconds the caller must still wait before trying this username from this address (0 = may try now). */
  waitMs(username: string, address: string): number {
    const t = this.now();
    const wait = (key: string) => Math.max(0, (this.live(key, t)?.blockedUntil ?? 0) - t);
    return Math.max(wait(userKey(username)), wait(addressKey(address)));
  }

  failed(username: string, address: string): FailureOutcome {
    const t = this.now();
    if (this.counters.size >= PRUNE_AT) this.prune(t);
    const lockedOut: FailureOutcome['lockedOut'] = [];
    let waitMs = 0;
    const { freeFailures, maxFailures, maxFailuresPerAddress } = this.settings;
    // An address tries many usernames legitimately (a shared NAT): it gets as many more free failures as its higher maximum.
    const addressFree = freeFailures + Math.max(0, maxFailuresPerAddress - maxFailures);
    for (const [scope, key, max, free] of [
      ['username', userKey(username), maxFailures, freeFailures],
      ['address', addressKey(address), maxFailuresPerAddress, addressFree],
    ] as const) {
      const counter = this.live(key, t) ?? { failures: 0, blockedUntil: 0, lastFailure: t };
      counter.failures += 1;
      counter.lastFailure = t;
      const delay = this.delayAfter(counter.failures, max, free);
      counter.blockedUntil = Math.max(counter.blockedUntil, t + delay);
      if (counter.failures === max) lockedOut.push(scope);
      this.counters.set(key, counter);
      waitMs = Math.max(waitMs, counter.blockedUntil - t);
    }
    return { waitMs, lockedOut };
  }

  succeeded(username: string): void {
    this.counters.delete(userKey(username));
  }

  /** The wait imposed after the n-th consecutive failure of a key with `free` free failures and lockout at `max`. */
  private delayAfter(failures: number, max: number, free: number): number {
    const lockoutMs = this.settings.lockoutSeconds * 1000;
    if (failures >= max) return lockoutMs;
    const beyond = failures - free;
    if (beyond <= 0) return 0;
    return Math.min(lockoutMs, this.settings.backoffMs * 2 ** Math.min(beyond - 1, 30));
  }

  private live(key: string, t: number): Counter | undefined {
    const counter = this.counters.get(key);
    if (counter && this.expired(counter, t)) {
      this.counters.delete(key);
      return undefined;
    }
    return counter;
  }

  private expired(counter: Counter, t: number): boolean {
    return t >= counter.blockedUntil && t - counter.lastFailure >= this.settings.lockoutSeconds * 1000;
  }

  private prune(t: number): void {
    for (const [key, counter] of this.counters) if (this.expired(counter, t)) this.counters.delete(key);
  }
}

const userKey = (username: string) => `u:${username}`;
const addressKey = (address: string) => `a:${address}`;
