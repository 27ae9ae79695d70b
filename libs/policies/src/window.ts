import { PolicyValidationError } from './errors';
import { parseClock } from './schedule';

/**
 * Backup windows: "HH:MM"–"HH:MM" in the policy's time zone; an end before the start crosses midnight
 * (22:00–06:00). A job that cannot start inside the window is skipped and reported.
 */
export interface BackupWindow {
  start: string;
  end: string;
}

export function assertWindow(window: BackupWindow, field = 'window'): void {
  const start = parseClock(window.start, `${field}.start`);
  const end = parseClock(window.end, `${field}.end`);
  if (start[0] === end[0] && start[1] === end[1]) throw new PolicyValidationError(field, 'start and end are equal; omit the window to allow any time');
}

/** Minutes since local midnight of `at` in the time zone. */
export function minuteOfDay(at: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return get('hour') * 60 + get('minute');
}

/** True when `at` lies inside the window (no window: always). */
export function insideWindow(window: BackupWindow | null, timeZone: string, at: Date): boolean {
  if (!window) return true;
  const [sh, sm] = parseClock(window.start, 'window.start');
  const [eh, em] = parseClock(window.end, 'window.end');
  const start = sh * 60 + sm;
  const end = eh * 60 + em;
  const now = minuteOfDay(at, timeZone);
  return start < end ? now >= start && now < end : now >= start || now < end;
}
