import { SingleBar } from 'cli-progress';
import type { CliContext } from './context';
import { bytes, mbPerSecond } from './format';

/**
 * A progress bar on stderr; silent with --json or when stderr is not a terminal. While it shows, the cursor is
 * hidden and line wrapping is off: stop() (and Ctrl-C) give the terminal back in its normal state.
 */
export class ProgressBar {
  private readonly bar?: SingleBar;
  private readonly stream: NodeJS.WritableStream;
  private readonly interrupted = (): void => {
    // Leave the terminal clean, then let SIGINT end the process as it would have without this listener.
    this.bar?.stop();
    process.kill(process.pid, 'SIGINT');
  };

  constructor(ctx: CliContext, total: number, label: string) {
    this.stream = ctx.io.stderr;
    if (ctx.json || !ctx.io.stderr.isTTY) return;
    this.bar = new SingleBar({
      stream: this.stream as never,
      format: `${label} [{bar}] {percentage}% | {done} / {size} | {speed} | {phase}`,
      hideCursor: true,
      clearOnComplete: false,
    });
    this.bar.start(Math.max(total, 1), 0, { done: bytes(0), size: bytes(total), speed: mbPerSecond(0), phase: '' });
    process.once('SIGINT', this.interrupted);
  }

  update(done: number, total: number, speed: number, phase = ''): void {
    if (!this.bar) return;
    this.bar.setTotal(Math.max(total, 1));
    this.bar.update(done, { done: bytes(done), size: bytes(total), speed: mbPerSecond(speed), phase });
  }

  /**
   * Draws the last state, ends the bar's line and resolves once stderr has taken all of it, so that nothing the
   * command writes afterwards (on stdout or stderr) lands inside the bar. Safe to call more than once.
   */
  async stop(): Promise<void> {
    if (!this.bar) return;
    process.off('SIGINT', this.interrupted);
    this.bar.stop();
    await new Promise<void>((resolve) => this.stream.write('', () => resolve()));
  }
}
