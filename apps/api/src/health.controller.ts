import { Controller, Get, Res } from '@nestjs/common';
import { ApiOkResponse, ApiProperty, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { ServerResponse } from 'node:http';
import { DataSource } from 'typeorm';
import { BackupQueue } from '@vmkeep/queue';
import { Public } from './auth/auth.decorators';

export class HealthDto {
  @ApiProperty({ enum: ['ok', 'degraded'] }) status!: 'ok' | 'degraded';
  @ApiProperty() database!: boolean;
  @ApiProperty() queue!: boolean;
  @ApiProperty({ description: 'Backup jobs waiting in the queue' }) queued!: number;
}

const CHECK_TIMEOUT_MS = 3000;

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly queue: BackupQueue,
  ) {}

  /** Liveness of the API and its database and Redis; 503 when one is down. No token needed. */
  @Public()
  @Get()
  @ApiOkResponse({ type: HealthDto })
  @ApiServiceUnavailableResponse({ type: HealthDto })
  async health(@Res({ passthrough: true }) res: ServerResponse): Promise<HealthDto> {
    const [database, queued] = await Promise.all([
      withTimeout(this.dataSource.query('SELECT 1').then(() => true)),
      withTimeout(this.queue.waitingCount()),
    ]);
    const ok = database === true && typeof queued === 'number';
    res.statusCode = ok ? 200 : 503;
    return { status: ok ? 'ok' : 'degraded', database: database === true, queue: typeof queued === 'number', queued: queued ?? 0 };
  }
}

function withTimeout<T>(p: Promise<T>): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), CHECK_TIMEOUT_MS);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}
