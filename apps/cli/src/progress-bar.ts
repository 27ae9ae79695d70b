import { SingleBar } from 'cli-progress';
import type { CliContext } from './context';
import { bytes, mbPerSecond } from './format';

/** A progress bar on stderr; silent with --json or when stderr is not a terminal. */
export class ProgressBar {
  private readonly bar?: SingleBar;

  constructor(ctx: CliContext, total: number, label: string) {
    if (ctx.json || !ctx.io.stderr.isTTY) return;
    this.bar = new SingleBar({
      stream: ctx.io.stderr as NodeJS.WritableStream as never,
      format: `${label} [{bar}] {percentage}% | {done} / {size} | {speed} | {phase}`,
      hideCursor: true,
      clearOnComplete: false,
    });
    this.bar.start(Math.max(total, 1), 0, { done: bytes(0), size: bytes(total), speed: mbPerSecond(0), phase: '' });
  }

  update(done: number, total: number, speed: number, phase = ''): void {
    if (!this.bar) return;
    this.bar.setTotal(Math.max(total, 1));
    this.bar.update(done, { done: bytes(done), size: bytes(total), speed: mbPerSecond(speed), phase });
  }

  stop(): void {
    this.bar?.stop();
  }
}
