import { appLogger, JsonLogger, type JsonLogLine } from './json-logger';

function capture(level: 'log' | 'error' = 'log') {
  const lines: string[] = [];
  const logger = new JsonLogger(level, (t) => t.replace(/hunter2/g, '***'), (l) => void lines.push(l), () => new Date(Date.UTC(2026, 0, 2, 3, 4, 5)));
  return { logger, lines, parsed: () => lines.map((l) => JSON.parse(l) as JsonLogLine) };
}

describe('JsonLogger', () => {
  it('writes one JSON object per line with time, level, context, msg and the job id named in the message', () => {
    const { logger, lines, parsed } = capture();
    logger.log('job 0f8fad5b-d9cb-469f-a165-70867728950e: succeeded', 'BackupWorker');
    logger.warn({ msg: 'delivery retried', jobId: 'abc' }, 'WebhookWorker');
    logger.log('plain');
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(parsed()).toEqual([
      { time: '2026-01-02T03:04:05.000Z', level: 'log', context: 'BackupWorker', msg: 'job 0f8fad5b-d9cb-469f-a165-70867728950e: succeeded', jobId: '0f8fad5b-d9cb-469f-a165-70867728950e' },
      { time: '2026-01-02T03:04:05.000Z', level: 'warn', context: 'WebhookWorker', msg: 'delivery retried', jobId: 'abc' },
      { time: '2026-01-02T03:04:05.000Z', level: 'log', msg: 'plain' },
    ]);
  });

  it('masks secrets in messages and stacks, keeps error stacks, honours the level', () => {
    const { logger, parsed } = capture('error');
    logger.log('not written');
    logger.error('login with hunter2 failed', 'Error: x\n    at hunter2 (file.js:1:1)', 'Auth');
    logger.error(new Error('boom hunter2'));
    const [first, second] = parsed();
    expect(parsed()).toHaveLength(2);
    expect(first).toMatchObject({ level: 'error', context: 'Auth', msg: 'login with *** failed' });
    expect(first.stack).toBe('Error: x\n    at *** (file.js:1:1)');
    expect(second.msg).toBe('boom ***');
    expect(second.stack).toMatch(/^Error: boom \*\*\*/);
  });

  it('appLogger picks JSON or Nest levels from the configuration', () => {
    expect(appLogger({ logLevel: 'warn', logFormat: 'text' })).toEqual(['fatal', 'error', 'warn']);
    expect(appLogger({ logLevel: 'warn', logFormat: 'json' })).toBeInstanceOf(JsonLogger);
  });
});
