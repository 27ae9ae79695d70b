import { PolicyValidationError } from './errors';

/**
 * Policy schedules: a cron pattern with an IANA time zone, or a simple daily / weekly form compiled to cron.
 * Patterns have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, as BullMQ's job
 * schedulers take them. Each field is `*`, a value, a range `a-b`, any of those with `/step`, or a comma list;
 * months and weekdays also take names (jan, mon). Anything else (L, W, #, ?) is refused here rather than at the
 * scheduler.
 */

export interface ScheduleInput {
  cron?: string;
  /** "HH:MM" every day. */
  daily?: string;
  /** Days ("mon".."sun") at "HH:MM". */
  weekly?: { days: string[]; at: string };
  /** IANA time zone; default UTC. */
  timeZone?: string;
}

export interface CompiledSchedule {
  cron: string;
  timeZone: string;
}

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
  /** Value of names[0]. */
  nameBase?: number;
}

const SECOND: FieldSpec = { name: 'second', min: 0, max: 59 };
const FIVE_FIELDS: FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: 'day of week', min: 0, max: 7, names: WEEKDAYS, nameBase: 0 },
];

export function compileSchedule(input: ScheduleInput, field = 'schedule'): CompiledSchedule {
  const timeZone = input.timeZone ?? 'UTC';
  assertTimeZone(timeZone, `${field}.timeZone`);
  const forms = (['cron', 'daily', 'weekly'] as const).filter((k) => input[k] !== undefined);
  if (forms.length !== 1) throw new PolicyValidationError(field, 'give exactly one of cron, daily or weekly');
  if (input.cron !== undefined) return { cron: assertCron(input.cron, `${field}.cron`), timeZone };
  if (input.daily !== undefined) {
    const [h, m] = parseClock(input.daily, `${field}.daily`);
    return { cron: `${m} ${h} * * *`, timeZone };
  }
  const weekly = input.weekly!;
  const [h, m] = parseClock(weekly.at, `${field}.weekly.at`);
  if (!Array.isArray(weekly.days) || weekly.days.length === 0) {
    throw new PolicyValidationError(`${field}.weekly.days`, 'name at least one day (mon, tue, ...)');
  }
  const days = weekly.days.map((d) => {
    const i = WEEKDAYS.indexOf(String(d).toLowerCase().slice(0, 3) as (typeof WEEKDAYS)[number]);
    if (i < 0 || String(d).length < 3) throw new PolicyValidationError(`${field}.weekly.days`, `unknown day ${JSON.stringify(d)}`);
    return i;
  });
  return { cron: `${m} ${h} * * ${[...new Set(days)].sort((a, b) => a - b).join(',')}`, timeZone };
}

/** Checks a cron pattern and returns it with single spaces. */
export function assertCron(pattern: string, field = 'cron'): string {
  const parts = String(pattern).trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) {
    throw new PolicyValidationError(field, `expected 5 fields (minute hour day month weekday) or 6 (seconds first), got ${parts.length}`);
  }
  const specs = parts.length === 6 ? [SECOND, ...FIVE_FIELDS] : FIVE_FIELDS;
  parts.forEach((part, i) => checkField(part, specs[i], field));
  return parts.join(' ');
}

/** True when the cron pattern has a seconds field. */
export function hasSeconds(pattern: string): boolean {
  return pattern.trim().split(/\s+/).length === 6;
}

function checkField(part: string, spec: FieldSpec, field: string): void {
  const fail = (why: string): never => {
    throw new PolicyValidationError(field, `${spec.name} field "${part}": ${why}`);
  };
  for (const item of part.split(',')) {
    const [range, step, ...rest] = item.split('/');
    if (rest.length > 0) fail('more than one "/"');
    if (step !== undefined && !/^[1-9]\d*$/.test(step)) fail(`step "${step}" is not a positive number`);
    if (range === '*') continue;
    const bounds = range.split('-');
    if (bounds.length > 2) fail(`"${range}" is not a value or a range a-b`);
    const values = bounds.map((b) => value(b, spec, fail));
    if (values.length === 2 && values[0] > values[1]) fail(`range ${range} runs backwards`);
  }
}

function value(text: string, spec: FieldSpec, fail: (why: string) => never): number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n < spec.min || n > spec.max) fail(`${n} is outside ${spec.min}-${spec.max}`);
    return n;
  }
  const i = spec.names?.indexOf(text.toLowerCase()) ?? -1;
  if (i < 0) fail(`"${text}" is not a number${spec.names ? ' or a name' : ''}`);
  return i + (spec.nameBase ?? 0);
}

/** "HH:MM" (24 h) → [hour, minute]. */
export function parseClock(text: string, field: string): [number, number] {
  const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(String(text));
  if (!m) throw new PolicyValidationError(field, `expected HH:MM (24 h), got ${JSON.stringify(text)}`);
  return [Number(m[1]), Number(m[2])];
}

export function assertTimeZone(timeZone: string, field = 'timeZone'): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new PolicyValidationError(field, `unknown IANA time zone ${JSON.stringify(timeZone)}`);
  }
}
