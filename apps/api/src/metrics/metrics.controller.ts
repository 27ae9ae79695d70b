import { Controller, Get, Header, Headers, Inject, UnauthorizedException } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiProduces, ApiTags } from '@nestjs/swagger';
import { createHash, timingSafeEqual } from 'node:crypto';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { Public } from '../auth/auth.decorators';
import { AuthService } from '../auth/auth.service';
import { MetricsService } from './metrics.service';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus';

/**
 * GET /metrics (outside the /api prefix, where Prometheus looks): Prometheus text format. Needs
 * `Authorization: Bearer <token>` with either VMKEEP_METRICS_TOKEN or any valid API token (viewer is enough).
 */
@ApiTags('metrics')
@ApiBearerAuth()
@Controller('metrics')
export class MetricsController {
  private readonly metricsTokenHash?: Buffer;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: MetricsService,
    private readonly auth: AuthService,
  ) {
    this.metricsTokenHash = config.metricsToken ? sha256(config.metricsToken) : undefined;
  }

  @Public()
  @Get()
  @Header('content-type', PROMETHEUS_CONTENT_TYPE)
  @Header('cache-control', 'no-store')
  @ApiProduces('text/plain')
  @ApiOkResponse({ description: 'Prometheus text exposition format 0.0.4', type: String })
  async scrape(@Headers('authorization') authorization?: string): Promise<string> {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (!token) throw new UnauthorizedException('missing bearer token (VMKEEP_METRICS_TOKEN or an API token)');
    const isMetricsToken = this.metricsTokenHash !== undefined && timingSafeEqual(sha256(token), this.metricsTokenHash);
    if (!isMetricsToken && !(await this.auth.authenticate(token))) throw new UnauthorizedException('invalid or expired token');
    return this.metrics.render();
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
