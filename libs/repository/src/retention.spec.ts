import { InvalidRetentionPolicyError } from './errors';
import { PrunablePoint, periodKey, planPrune } from './retention';

const at = (iso: string, id = iso): PrunablePoint => ({ id, createdAt: iso });
const ids = (list: { id: string }[]) => list.map((p) => p.id);
const NOW = new Date('2025-03-31T23:59:00Z');

describe('planPrune', () => {
  it('keeps the last N, newest first, and says why for every point', () => {
    const points = ['2025-03-01T10:00:00Z', '2025-03-03T10:00:00Z', '2025-03-02T10:00:00Z', '2025-03-04T10:00:00Z'].map((t) => at(t));
    const plan = planPrune(points, { keepLast: 2 }, NOW);
    expect(plan.keep).toEqual([
      { id: '2025-03-04T10:00:00Z', createdAt: '2025-03-04T10:00:00.000Z', reasons: ['last 1/2'] },
      { id: '2025-03-03T10:00:00Z', createdAt: '2025-03-03T10:00:00.000Z', reasons: ['last 2/2'] },
    ]);
    expect(ids(plan.remove)).toEqual(['2025-03-02T10:00:00Z', '2025-03-01T10:00:00Z']);
    expect(plan.remove[0].reason).toMatch(/not selected by the policy \(keepLast 2/);
  });

  it('keeps the newest point of each of the N most recent days that have points', () => {
    const points = [
      at('2025-03-10T08:00:00Z'),
      at('2025-03-10T20:00:00Z'),
      at('2025-03-12T01:00:00Z'),
      at('2025-03-12T23:00:00Z'),
      at('2025-03-15T12:00:00Z'),
    ];
    const plan = planPrune(points, { keepDaily: 3 }, NOW);
    expect(plan.keep.map((k) => [k.id, k.reasons])).toEqual([
      ['2025-03-15T12:00:00Z', ['daily 2025-03-15 (1/3)']],
      ['2025-03-12T23:00:00Z', ['daily 2025-03-12 (2/3)']],
      ['2025-03-10T20:00:00Z', ['daily 2025-03-10 (3/3)']],
    ]);
    expect(ids(plan.remove)).toEqual(['2025-03-12T01:00:00Z', '2025-03-10T08:00:00Z']);
  });

  it('combines GFS rules and lists every reason a point is kept', () => {
    const points: PrunablePoint[] = [];
    for (let d = new Date('2024-11-01T03:00:00Z'); d < NOW; d = new Date(d.getTime() + 86_400_000)) points.push(at(d.toISOString()));
    const plan = planPrune(points, { keepLast: 1, keepDaily: 7, keepWeekly: 4, keepMonthly: 3, keepYearly: 2 }, NOW);
    const newest = plan.keep[0];
    expect(newest.id).toBe('2025-03-31T03:00:00.000Z');
    expect(newest.reasons).toEqual([
      'last 1/1',
      'daily 2025-03-31 (1/7)',
      'weekly 2025-W14 (1/4)',
      'monthly 2025-03 (1/3)',
      'yearly 2025 (1/2)',
    ]);
    const byId = new Map(plan.keep.map((k) => [k.id, k.reasons]));
    // Weekly: newest point of ISO weeks 14, 13, 12, 11 (Sundays end weeks 13..11).
    expect(byId.get('2025-03-30T03:00:00.000Z')).toEqual(['daily 2025-03-30 (2/7)', 'weekly 2025-W13 (2/4)']);
    expect(byId.get('2025-03-23T03:00:00.000Z')).toEqual(['weekly 2025-W12 (3/4)']);
    expect(byId.get('2025-03-16T03:00:00.000Z')).toEqual(['weekly 2025-W11 (4/4)']);
    // Monthly: last day of Feb and Jan; yearly: last point of 2024.
    expect(byId.get('2025-02-28T03:00:00.000Z')).toEqual(['monthly 2025-02 (2/3)']);
    expect(byId.get('2025-01-31T03:00:00.000Z')).toEqual(['monthly 2025-01 (3/3)']);
    expect(byId.get('2024-12-31T03:00:00.000Z')).toEqual(['yearly 2024 (2/2)']);
    expect(plan.keep.length).toBe(7 + 2 + 2 + 1); // Mar 25-31 (covering weeks 14, 13), weeks 12 and 11, Feb, Jan, 2024
    expect(plan.keep.length + plan.remove.length).toBe(points.length);
  });

  it('computes periods in the policy time zone', () => {
    // 23:30 UTC on the 1st is already the 2nd in Berlin (UTC+1 in January).
    const points = [at('2025-01-01T23:30:00Z', 'late'), at('2025-01-01T12:00:00Z', 'noon')];
    expect(ids(planPrune(points, { keepDaily: 2 }, NOW).keep)).toEqual(['late']);
    expect(ids(planPrune(points, { keepDaily: 2, timeZone: 'Europe/Berlin' }, NOW).keep)).toEqual(['late', 'noon']);
    expect(periodKey(new Date('2025-01-01T23:30:00Z'), 'daily', 'Europe/Berlin')).toBe('2025-01-02');
    expect(periodKey(new Date('2024-12-30T12:00:00Z'), 'weekly')).toBe('2025-W01');
    expect(periodKey(new Date('2021-01-03T12:00:00Z'), 'weekly')).toBe('2020-W53');
    expect(periodKey(new Date('2025-06-01T05:10:00Z'), 'hourly', 'America/New_York')).toBe('2025-06-01T01');
  });

  it('keeps protected points and points from the future without counting them', () => {
    const points = [
      { ...at('2025-03-01T00:00:00Z', 'archived'), protectedReason: 'archived until 2030-01-01T00:00:00.000Z' },
      at('2025-03-02T00:00:00Z', 'old'),
      at('2025-03-03T00:00:00Z', 'new'),
      at('2025-04-30T00:00:00Z', 'future'),
    ];
    const plan = planPrune(points, { keepLast: 1 }, NOW);
    expect(plan.keep.map((k) => [k.id, k.reasons[0]])).toEqual([
      ['future', 'created after now (clock skew)'],
      ['new', 'last 1/1'],
      ['archived', 'archived until 2030-01-01T00:00:00.000Z'],
    ]);
    expect(ids(plan.remove)).toEqual(['old']);
  });

  it('refuses policies that keep nothing or are malformed', () => {
    const points = [at('2025-03-01T00:00:00Z')];
    expect(() => planPrune(points, {}, NOW)).toThrow(InvalidRetentionPolicyError);
    expect(() => planPrune(points, { keepLast: 0, keepDaily: 0 }, NOW)).toThrow(/keeps nothing/);
    expect(() => planPrune(points, { keepLast: -1 }, NOW)).toThrow(/non-negative integer/);
    expect(() => planPrune(points, { keepDaily: 1.5 }, NOW)).toThrow(InvalidRetentionPolicyError);
    expect(() => planPrune(points, { keepDaily: 1, timeZone: 'Mars/Olympus' }, NOW)).toThrow(/unknown time zone/);
  });
});
