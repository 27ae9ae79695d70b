import { Controller, Get, Headers, Logger, Param, ParseIntPipe, ParseUUIDPipe, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { baseName, FileBrowseService, normalizeGuestPath, readFileRange, tarStream, translate, zipStream } from '@vmkeep/restore';
import { AuditService } from '../audit/audit.service';
import { AuthUser, CurrentUser, Roles } from '../auth/auth.decorators';
import { startByteDownload } from '../restore-points/disk-stream';
import { ArchiveQueryDto, DirQueryDto, GuestPathQueryDto } from './files.dto';

/** `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 8187). */
function disposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_') || 'download';
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/**
 * Browsing the guest file systems of a restore point (any signed-in user) and downloading files and folders
 * (operator or admin: a download takes data out of the appliance, so viewers may look but not take). Every
 * download is audit-logged with the VM id.
 */
@ApiTags('files')
@ApiBearerAuth()
@Controller('restore-points/:id/volumes')
export class FilesController {
  private readonly logger = new Logger('Files');

  constructor(
    private readonly files: FileBrowseService,
    private readonly audit: AuditService,
  ) {}

  /** Volumes (partitions) of every disk, with their file systems, sizes and dirty flags. */
  @Get()
  volumes(@Param('id', ParseUUIDPipe) id: string) {
    return this.files.use(id, async (b) => b.volumes);
  }

  /** One page of a folder; `sort` reads the whole folder first. */
  @Get(':vol/dir')
  dir(@Param('id', ParseUUIDPipe) id: string, @Param('vol', ParseIntPipe) vol: number, @Query() q: DirQueryDto) {
    return this.files.use(id, (b) => b.list(vol, q.path, q));
  }

  @Get(':vol/stat')
  stat(@Param('id', ParseUUIDPipe) id: string, @Param('vol', ParseIntPipe) vol: number, @Query() q: GuestPathQueryDto) {
    return this.files.use(id, (b) => b.stat(vol, q.path));
  }

  @Get(':vol/readlink')
  readlink(@Param('id', ParseUUIDPipe) id: string, @Param('vol', ParseIntPipe) vol: number, @Query() q: GuestPathQueryDto) {
    return this.files.use(id, (b) => b.readlink(vol, q.path));
  }

  /** The file's bytes; one `Range: bytes=a-b` gives 206. Holes are sent as zeros without being read. */
  @Get(':vol/file')
  @Roles('operator')
  @ApiProduces('application/octet-stream')
  @ApiHeader({ name: 'Range', required: false, description: 'bytes=first-last (one range)' })
  @ApiResponse({ status: 200, description: 'The whole file', schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 206, description: 'The requested range', schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 416, description: 'Range outside the file' })
  async file(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('vol', ParseIntPipe) vol: number,
    @Query() q: GuestPathQueryDto,
    @Headers('range') rangeHeader: string | undefined,
    @CurrentUser() user: AuthUser,
    @Res() res: ServerResponse,
  ): Promise<void> {
    const path = normalizeGuestPath(q.path);
    await this.files.use(id, async (b) => {
      const handle = await translate(b.fileSystem(vol).open(path));
      await this.audit.record(user, 'files.download', id, { vmId: await this.files.vmIdOf(id), volume: vol, path, range: rangeHeader ?? null });
      const span = startByteDownload(res, rangeHeader, handle.size, disposition(baseName(path) || 'file'));
      if (!span) return;
      await this.pipe(readFileRange(handle, span.start, span.end + 1), res, `${id} volume ${vol} ${path}`);
    });
  }

  /** A folder (or file) as a streaming ZIP64 (stored, UTF-8 names) or PAX tar (symlinks, modes, sparse files). */
  @Get(':vol/archive')
  @Roles('operator')
  @ApiProduces('application/zip', 'application/x-tar')
  @ApiResponse({ status: 200, description: 'The archive', schema: { type: 'string', format: 'binary' } })
  async archive(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('vol', ParseIntPipe) vol: number,
    @Query() q: ArchiveQueryDto,
    @CurrentUser() user: AuthUser,
    @Res() res: ServerResponse,
  ): Promise<void> {
    const path = normalizeGuestPath(q.path);
    const format = q.format ?? 'zip';
    await this.files.use(id, async (b) => {
      const fs = b.fileSystem(vol);
      await translate(fs.stat(path));
      await this.audit.record(user, 'files.archive', id, { vmId: await this.files.vmIdOf(id), volume: vol, path, format });
      const rootName = baseName(path) || `volume-${vol}`;
      const skipped = (p: string, reason: string) => this.logger.warn(`restore point ${id} volume ${vol}: skipped ${JSON.stringify(p)}: ${reason}`);
      res.statusCode = 200;
      res.setHeader('Content-Type', format === 'zip' ? 'application/zip' : 'application/x-tar');
      res.setHeader('Content-Disposition', disposition(`${rootName}.${format}`));
      const body = format === 'zip' ? zipStream(fs, path, rootName, skipped) : tarStream(fs, path, rootName, skipped);
      await this.pipe(body, res, `${id} volume ${vol} ${path} (${format})`);
    });
  }

  /** Streams to the client at its pace; an error mid-way aborts the transfer (never substitute data). */
  private async pipe(body: AsyncIterable<Buffer>, res: ServerResponse, what: string): Promise<void> {
    await pipeline(Readable.from(body, { objectMode: false }), res).catch((err: Error) => {
      this.logger.error(`restore point ${what}: download aborted: ${err.message}`);
      res.destroy();
    });
  }
}
