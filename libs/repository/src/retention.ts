/**
 * Retention: which restore points a policy keeps. `planPrune` is a pure function of the points, the policy and
 * the current time, so a dry run and the real prune decide identically.
 *
 * Semantics (as in common backup tools): points are taken newest first. `keepLast` keeps the newest N. Each GFS
 * rule (hourly, daily, weekly, monthly, yearly) keeps the newest point of each of the N most recent periods that
 * contain a point; periods are calendar hours/days/ISO weeks/months/years in `timeZone` (default UTC). A point
 * kept by several rules lists every reason. Points created after `now` (clock skew) are always kept, and points
 * the caller marks as protected (archives) are kept without counting against any rule.
 */
import { InvalidRetentionPolicyError } from './errors';

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  /** IANA time zone that defines the periods' boundaries; default 'UTC'. */
  timeZone?: string;
}

export interface PrunablePoint {
  id: string;
  createdAt: string | Date;
  /** Set for points no policy may remove (e.g. 'archived until 2030-01-01T00:00:00.000Z'): kept, not counted. */
  protectedReason?: string;
}

export interface KeptPoint {
  id: string;
  createdAt: string;
  /** Why it stays, e.g. ['last 1/3', 'daily 2025-01-02 (1/7)']. */
  reasons: string[];
}

export interface RemovedPoint {
  id: string;
  createdAt: string;
  reason: string;
}

export interface PrunePlan {
  /** Newest first. */
  keep: KeptPoint[];
  /** Newest first. */
  remove: RemovedPoint[];
}

type Rule = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
const RULES: { rule: Rule; field: keyof RetentionPolicy }[] = [
  { rule: 'hourly', field: 'keepHourly' },
  { rule: 'daily', field: 'keepDaily' },
  { rule: 'weekly', field: 'keepWeekly' },
  { rule: 'monthly', field: 'keepMonthly' },
  { rule: 'yearly', field: 'keepYearly' },
];
const COUNT_FIELDS: (keyof RetentionPolicy)[] = ['keepLast', ...RULES.map((r) => r.field)];

/** Checks a policy; at least one rule must keep something (an empty policy would remove every point). */
export function validateRetentionPolicy(policy: RetentionPolicy): void {
  if (typeof policy !== 'object' || policy === null) throw new InvalidRetentionPolicyError('policy must be an object');
  let any = false;
  for (const field of COUNT_FIELDS) {
    const v = policy[field];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new InvalidRetentionPolicyError(`${field} must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    if (v > 0) any = true;
  }
  if (!any) throw new InvalidRetentionPolicyError('the policy keeps nothing: set keepLast or a GFS rule to at least 1');
  periodFormatter(policy.timeZone ?? 'UTC');
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function periodFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone,
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        hourCycle: 'h23',
      });
    } catch {
      throw new InvalidRetentionPolicyError(`unknown time zone ${JSON.stringify(timeZone)}`);
    }
    formatters.set(timeZone, f);
  }
  return f;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** ISO 8601 week of a calendar date: [week-numbering year, week]. */
function isoWeek(year: number, month: number, day: number): [number, number] {
  const d = new Date(Date.UTC(year, month - 1, day));
  const weekday = d.getUTCDay() || 7; // Monday 1 .. Sunday 7
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return [weekYear, week];
}

/** The period a time falls in, as a readable key (e.g. '2025-01-02', '2025-W01'). */
export function periodKey(time: Date, rule: Rule, timeZone = 'UTC'): string {
  const parts: Record<string, number> = {};
  for (const p of periodFormatter(timeZone).formatToParts(time)) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  const { year, month, day, hour } = parts;
  switch (rule) {
    case 'hourly':
      return `${year}-${pad(month)}-${pad(day)}T${pad(hour)}`;
    case 'daily':
      return `${year}-${pad(month)}-${pad(day)}`;
    case 'weekly': {
      const [wy, w] = isoWeek(year, month, day);
      return `${wy}-W${pad(w)}`;
    }
    case 'monthly':
      return `${year}-${pad(month)}`;
    case 'yearly':
      return String(year);
  }
}

function toDate(value: string | Date, id: string): Date {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) throw new InvalidRetentionPolicyError(`point ${id} has an invalid createdAt`);
  return d;
}

/** Decides which points a policy keeps and which it removes, and why. Pure: same input, same plan. */
export function planPrune(points: PrunablePoint[], policy: RetentionPolicy, now: Date): PrunePlan {
  validateRetentionPolicy(policy);
  const timeZone = policy.timeZone ?? 'UTC';
  const sorted = points
    .map((p) => ({ ...p, time: toDate(p.createdAt, p.id) }))
    .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const reasons = new Map<string, string[]>();
  const because = (id: string, reason: string) => {
    const list = reasons.get(id) ?? [];
    list.push(reason);
    reasons.set(id, list);
  };

  const candidates: typeof sorted = [];
  for (const p of sorted) {
    if (p.protectedReason) because(p.id, p.protectedReason);
    else if (p.time.getTime() > now.getTime()) because(p.id, 'created after now (clock skew)');
    else candidates.push(p);
  }

  const keepLast = policy.keepLast ?? 0;
  candidates.slice(0, keepLast).forEach((p, i) => because(p.id, `last ${i + 1}/${keepLast}`));

  for (const { rule, field } of RULES) {
    const n = (policy[field] as number | undefined) ?? 0;
    let kept = 0;
    let lastKey: string | undefined;
    for (const p of candidates) {
      if (kept >= n) break;
      const key = periodKey(p.time, rule, timeZone);
      if (key === lastKey) continue;
      lastKey = key;
      kept++;
      because(p.id, `${rule} ${key} (${kept}/${n})`);
    }
  }

  const plan: PrunePlan = { keep: [], remove: [] };
  const rulesText = COUNT_FIELDS.filter((f) => ((policy[f] as number | undefined) ?? 0) > 0)
    .map((f) => `${f} ${String(policy[f])}`)
    .join(', ');
  for (const p of sorted) {
    const createdAt = p.time.toISOString();
    const why = reasons.get(p.id);
    if (why) plan.keep.push({ id: p.id, createdAt, reasons: why });
    else plan.remove.push({ id: p.id, createdAt, reason: `not selected by the policy (${rulesText}, time zone ${timeZone})` });
  }
  return plan;
}
