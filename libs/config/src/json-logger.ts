import type { LoggerService, LogLevel } from '@nestjs/common';
import { enabledLogLevels, type AppConfig } from './config';

/** One line of VMKEEP_LOG_FORMAT=json output. */
export interface JsonLogLine {
  /** ISO 8601, UTC. */
  time: string;
  level: LogLevel;
  /** Nest logger context (class name), when given. */
  context?: string;
  msg: string;
  /** The job the message is about, when it names one ("job <uuid>") or the caller passes { jobId }. */
  jobId?: string;
  /** Error stack (error level), masked like the message. */
  stack?: string;
}

const JOB_ID = /\bjob ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b/i;

/**
 * Nest LoggerService writing one JSON object per line (VMKEEP_LOG_FORMAT=json) to stdout (stderr for warn and
 * worse is not used: one stream keeps lines ordered). Every message and stack goes through `redact` first.
 */
export class JsonLogger implements LoggerService {
  private readonly enabled: Set<LogLevel>;

  constructor(
    level: AppConfig['logLevel'],
    private readonly redact: (text: string) => string = (t) => t,
    private readonly write: (line: string) => void = (line) => void process.stdout.write(line),
    private readonly now: () => Date = () => new Date(),
  ) {
    this.enabled = new Set(enabledLogLevels(level));
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.emit('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.emit('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.emit('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.emit('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.emit('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.emit('fatal', message, rest);
  }
  setLogLevels(levels: LogLevel[]): void {
    this.enabled.clear();
    for (const l of levels) this.enabled.add(l);
  }

  /** Nest passes (message, context) or, for errors, (message, stack, context); the context is the last string. */
  private emit(level: LogLevel, message: unknown, rest: unknown[]): void {
    if (!this.enabled.has(level)) return;
    const params = [...rest];
    const context = params.length && typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    let stack = typeof params[0] === 'string' ? params[0] : undefined;
    let jobId: string | undefined;
    let text: string;
    if (message instanceof Error) {
      text = message.message;
      stack ??= message.stack;
    } else if (typeof message === 'object' && message !== null) {
      const { msg, message: m, jobId: id, ...fields } = message as Record<string, unknown>;
      text = typeof msg === 'string' ? msg : typeof m === 'string' ? m : JSON.stringify(fields);
      if (typeof id === 'string') jobId = id;
    } else {
      text = String(message);
    }
    jobId ??= JOB_ID.exec(text)?.[1];
    const line: JsonLogLine = {
      time: this.now().toISOString(),
      level,
      ...(context ? { context } : {}),
      msg: this.redact(text),
      ...(jobId ? { jobId } : {}),
      ...(stack && (level === 'error' || level === 'fatal') ? { stack: this.redact(stack) } : {}),
    };
    this.write(`${JSON.stringify(line)}\n`);
  }
}

/** The `logger` option for NestFactory: a JsonLogger for VMKEEP_LOG_FORMAT=json, else the enabled levels. */
export function appLogger(
  config: Pick<AppConfig, 'logLevel' | 'logFormat'>,
  redact?: (text: string) => string,
): LoggerService | LogLevel[] {
  return config.logFormat === 'json' ? new JsonLogger(config.logLevel, redact) : enabledLogLevels(config.logLevel);
}
