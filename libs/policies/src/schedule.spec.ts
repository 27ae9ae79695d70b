import { PolicyValidationError } from './errors';
import { assertCron, compileSchedule, hasSeconds } from './schedule';
import { insideWindow, minuteOfDay } from './window';

describe('compileSchedule', () => {
  it('keeps a valid cron pattern with its time zone, normalising spaces', () => {
    expect(compileSchedule({ cron: ' 30  22 * * 1-5 ', timeZone: 'Europe/Berlin' })).toEqual({ cron: '30 22 * * 1-5', timeZone: 'Europe/Berlin' });
    expect(compileSchedule({ cron: '*/5 * * * * *' })).toEqual({ cron: '*/5 * * * * *', timeZone: 'UTC' });
    expect(hasSeconds('*/5 * * * * *')).toBe(true);
    expect(hasSeconds('0 3 * * *')).toBe(false);
  });

  it('compiles the daily and weekly forms', () => {
    expect(compileSchedule({ daily: '02:05' }).cron).toBe('5 2 * * *');
    expect(compileSchedule({ weekly: { days: ['fri', 'Mon', 'monday'], at: '23:59' }, timeZone: 'America/New_York' })).toEqual({
      cron: '59 23 * * 1,5',
      timeZone: 'America/New_York',
    });
  });

  it.each([
    [{}, 'schedule: give exactly one of cron, daily or weekly'],
    [{ cron: '* * *', daily: '01:00' }, 'schedule: give exactly one'],
    [{ cron: '* * *' }, 'schedule.cron: expected 5 fields'],
    [{ cron: '61 * * * *' }, 'schedule.cron: minute field "61": 61 is outside 0-59'],
    [{ cron: '0 0 L * *' }, 'schedule.cron: day of month field "L": "L" is not a number'],
    [{ cron: '0 0 * * 5-1' }, 'range 5-1 runs backwards'],
    [{ cron: '*/0 * * * *' }, 'step "0" is not a positive number'],
    [{ daily: '24:00' }, 'schedule.daily: expected HH:MM'],
    [{ weekly: { days: ['someday'], at: '10:00' } }, 'schedule.weekly.days: unknown day "someday"'],
    [{ weekly: { days: [], at: '10:00' } }, 'schedule.weekly.days: name at least one day'],
    [{ daily: '10:00', timeZone: 'Mars/Olympus' }, 'schedule.timeZone: unknown IANA time zone "Mars/Olympus"'],
  ])('refuses %j naming the field', (input, message) => {
    expect(() => compileSchedule(input)).toThrow(PolicyValidationError);
    expect(() => compileSchedule(input)).toThrow(message);
  });

  it('accepts month and weekday names and lists', () => {
    expect(assertCron('0 6 1,15 jan-mar mon,WED')).toBe('0 6 1,15 jan-mar mon,WED');
  });
});

describe('backup window', () => {
  const at = (iso: string) => new Date(iso);

  it('reads the local time in the time zone', () => {
    expect(minuteOfDay(at('2026-01-15T21:30:00Z'), 'UTC')).toBe(21 * 60 + 30);
    expect(minuteOfDay(at('2026-01-15T21:30:00Z'), 'Europe/Berlin')).toBe(22 * 60 + 30); // CET, UTC+1
    expect(minuteOfDay(at('2026-07-15T21:30:00Z'), 'Europe/Berlin')).toBe(23 * 60 + 30); // CEST, UTC+2
  });

  it('handles same-day windows and windows across midnight, end exclusive', () => {
    const day = { start: '08:00', end: '17:00' };
    expect(insideWindow(day, 'UTC', at('2026-01-15T08:00:00Z'))).toBe(true);
    expect(insideWindow(day, 'UTC', at('2026-01-15T16:59:00Z'))).toBe(true);
    expect(insideWindow(day, 'UTC', at('2026-01-15T17:00:00Z'))).toBe(false);
    const night = { start: '22:00', end: '06:00' };
    expect(insideWindow(night, 'Europe/Berlin', at('2026-01-15T21:00:00Z'))).toBe(true); // 22:00 local
    expect(insideWindow(night, 'Europe/Berlin', at('2026-01-16T04:59:00Z'))).toBe(true); // 05:59 local
    expect(insideWindow(night, 'Europe/Berlin', at('2026-01-16T05:00:00Z'))).toBe(false); // 06:00 local
    expect(insideWindow(night, 'UTC', at('2026-01-15T12:00:00Z'))).toBe(false);
    expect(insideWindow(null, 'UTC', at('2026-01-15T12:00:00Z'))).toBe(true);
  });
});
