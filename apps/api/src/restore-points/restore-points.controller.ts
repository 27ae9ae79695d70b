import { Controller, Get, Headers, Logger, Param, ParseUUIDPipe, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { ServerResponse } from 'node:http';
import { RestorePointDto, RestorePointsQueryDto } from './restore-points.dto';
import { RestorePointsService } from './restore-points.service';
import { parseRange, streamDisk } from './disk-stream';

@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('restore-points')
export class RestorePointsController {
  private readonly logger = new Logger('RestorePoints');

  constructor(private readonly points: RestorePointsService) {}

  /** Restore points, newest first. */
  @Get()
  @ApiOkResponse({ type: [RestorePointDto] })
  list(@Query() query: RestorePointsQueryDto): Promise<RestorePointDto[]> {
    return this.points.list(query.vmId);
  }

  @Get(':id')
  @ApiOkResponse({ type: RestorePointDto })
  get(@Param('id', ParseUUIDPipe) id: string): Promise<RestorePointDto> {
    return this.points.get(id);
  }

  /** The disk as raw bytes, streamed from the repository; a single `Range: bytes=a-b` gives 206. */
  @Get(':id/disks/:key/raw')
  @ApiProduces('application/octet-stream')
  @ApiHeader({ name: 'Range', required: false, description: 'bytes=first-last (one range)' })
  @ApiResponse({ status: 200, description: 'The whole disk', schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 206, description: 'The requested range', schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 416, description: 'Range outside the disk' })
  async raw(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('key') key: string,
    @Headers('range') rangeHeader: string | undefined,
    @Res() res: ServerResponse,
  ): Promise<void> {
    const { disk, fileName } = await this.points.openDisk(id, key);
    try {
      const size = disk.size;
      const range = parseRange(rangeHeader, size);
      res.setHeader('Accept-Ranges', 'bytes');
      if (range === 'unsatisfiable') {
        res.statusCode = 416;
        res.setHeader('Content-Range', `bytes */${size}`);
        res.end();
        return;
      }
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Disposition', `attachment; filename="${fileName}"`);
      const span = range ?? { start: 0, end: size - 1 };
      if (range) {
        res.statusCode = 206;
        res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      } else {
        res.statusCode = 200;
      }
      res.setHeader('Content-Length', String(span.end - span.start + 1));
      if (size === 0 || res.req?.method === 'HEAD') {
        res.end();
        return;
      }
      res.flushHeaders();
      await streamDisk(disk, res, span).catch((err: Error) => {
        this.logger.error(`restore point ${id} disk ${key}: download aborted: ${err.message}`);
      });
    } finally {
      await disk.close();
    }
  }
}
