import { Controller, Get, Headers, Logger, Param, ParseUUIDPipe, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import { exportDisk, exportVm, type ExportStream } from '@vmkeep/restore';
import type { ServerResponse } from 'node:http';
import { DiskExportQueryDto, RestorePointDto, RestorePointsQueryDto } from './restore-points.dto';
import { RestorePointsService } from './restore-points.service';
import { startByteDownload, streamDisk, streamExport } from './disk-stream';

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
      const span = startByteDownload(res, rangeHeader, disk.size, `attachment; filename="${fileName}"`);
      if (!span) return;
      res.flushHeaders();
      await streamDisk(disk, res, span).catch((err: Error) => {
        this.logger.error(`restore point ${id} disk ${key}: download aborted: ${err.message}`);
      });
    } finally {
      await disk.close();
    }
  }

  /**
   * The disk as an image: VMDK streamOptimized (compressed, chunked transfer), dynamic VHDX or raw (with Range
   * support, as /raw), streamed from the repository without a temp copy. A read error mid-way aborts the
   * transfer.
   */
  @Get(':id/disks/:key/export')
  @ApiProduces('application/x-vmdk', 'application/x-vhdx', 'application/octet-stream')
  @ApiResponse({ status: 200, description: 'The disk image', schema: { type: 'string', format: 'binary' } })
  async exportDisk(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('key') key: string,
    @Query() query: DiskExportQueryDto,
    @Headers('range') rangeHeader: string | undefined,
    @Res() res: ServerResponse,
  ): Promise<void> {
    if (query.format === 'raw') return this.raw(id, key, rangeHeader, res);
    const { disk, baseName } = await this.points.openDisk(id, key);
    try {
      const exp = await exportDisk(disk, query.format, { fileName: `${baseName}.vmdk` });
      await this.send(exp, res, `${baseName}.${exp.extension}`, `restore point ${id} disk ${key}`);
    } finally {
      await disk.close();
    }
  }

  /** The whole VM as an OVA: OVF descriptor, one streamOptimized VMDK per disk, SHA-256 manifest; streamed. */
  @Get(':id/export.ova')
  @ApiProduces('application/x-tar')
  @ApiResponse({ status: 200, description: 'The OVA archive', schema: { type: 'string', format: 'binary' } })
  async exportOva(@Param('id', ParseUUIDPipe) id: string, @Res() res: ServerResponse): Promise<void> {
    const { vm, disks, baseName } = await this.points.openVm(id);
    try {
      const exp = await exportVm(vm, disks);
      await this.send(exp, res, `${baseName}.ova`, `restore point ${id} OVA`);
    } finally {
      await Promise.allSettled(disks.map((d) => d.close()));
    }
  }

  private async send(exp: ExportStream, res: ServerResponse, fileName: string, what: string): Promise<void> {
    await streamExport(exp, res, fileName).catch((err: Error) => {
      this.logger.error(`${what}: ${exp.format} export aborted: ${err.message}`);
    });
  }
}
