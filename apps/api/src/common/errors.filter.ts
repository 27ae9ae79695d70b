import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { VmkeepError } from '@vmkeep/contracts';
import { HostConnectionError } from '@vmkeep/inventory';
import { QueueUnavailableError } from '@vmkeep/queue';
import { RepositoryError } from '@vmkeep/repository';
import { VsphereError } from '@vmkeep/vsphere';
import { redactSecrets } from './redact';
import { TooManyRequestsException } from './too-many-requests';

const STATUS_BY_CODE: Record<string, number> = {
  invalid: HttpStatus.BAD_REQUEST,
  not_found: HttpStatus.NOT_FOUND,
  conflict: HttpStatus.CONFLICT,
  forbidden: HttpStatus.FORBIDDEN,
  unavailable: HttpStatus.SERVICE_UNAVAILABLE,
  POINT_NOT_FOUND: HttpStatus.NOT_FOUND,
  POINT_DISK_NOT_FOUND: HttpStatus.NOT_FOUND,
  INVALID_DISK_KEY: HttpStatus.BAD_REQUEST,
  /** A guest file system in a restore point is damaged, or of a kind not read yet. */
  damaged: HttpStatus.UNPROCESSABLE_ENTITY,
  unsupported: HttpStatus.NOT_IMPLEMENTED,
};

interface ErrorBody {
  statusCode: number;
  error: string;
  message: string | string[];
  [extra: string]: unknown;
}

/**
 * One error shape for the whole API: Nest's HTTP exceptions as they are; VmkeepError by code (host_* → 502);
 * errors of the vSphere client → 502; repository errors → 404 for unknown points/disks, else 500 with the
 * message (data problems must be visible). Anything else → 500 without internals. After headers were sent
 * (a download), the response is aborted instead.
 */
@Catch()
export class ErrorsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<ServerResponse>();
    if (res.headersSent) {
      res.destroy(exception instanceof Error ? exception : undefined);
      return;
    }
    const body = this.toBody(exception);
    const json = JSON.stringify(body);
    res.statusCode = body.statusCode;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    if (exception instanceof TooManyRequestsException) res.setHeader('Retry-After', String(exception.retryAfterSeconds));
    res.setHeader('Content-Length', Buffer.byteLength(json));
    res.end(json);
  }

  private toBody(exception: unknown): ErrorBody {
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const response = exception.getResponse();
      if (typeof response === 'object' && response !== null) {
        const r = response as Partial<ErrorBody>;
        return { ...r, statusCode: status, error: r.error ?? exception.name, message: r.message ?? exception.message };
      }
      return { statusCode: status, error: exception.name, message: String(response) };
    }
    if (exception instanceof HostConnectionError) {
      return {
        statusCode: HttpStatus.BAD_GATEWAY,
        error: 'Bad Gateway',
        message: redactSecrets(exception.message),
        code: exception.code,
        ...(exception.presentedThumbprint ? { presentedThumbprint: exception.presentedThumbprint } : {}),
      };
    }
    if (exception instanceof VmkeepError) {
      const status = STATUS_BY_CODE[exception.code] ?? (exception.code.startsWith('host_') ? HttpStatus.BAD_GATEWAY : HttpStatus.BAD_REQUEST);
      return { statusCode: status, error: HttpStatus[status] ?? 'Error', message: exception.message, code: exception.code };
    }
    if (exception instanceof QueueUnavailableError) {
      return { statusCode: HttpStatus.SERVICE_UNAVAILABLE, error: 'Service Unavailable', message: exception.message };
    }
    if (exception instanceof VsphereError) {
      return { statusCode: HttpStatus.BAD_GATEWAY, error: 'Bad Gateway', message: redactSecrets(`vSphere: ${exception.message}`) };
    }
    if (exception instanceof RepositoryError) {
      const status = STATUS_BY_CODE[exception.code] ?? HttpStatus.INTERNAL_SERVER_ERROR;
      if (status >= 500) this.logger.error(redactSecrets(`repository: ${exception.message}`));
      return { statusCode: status, error: HttpStatus[status] ?? 'Error', message: exception.message, code: exception.code };
    }
    this.logger.error(redactSecrets(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception)));
    return { statusCode: HttpStatus.INTERNAL_SERVER_ERROR, error: 'Internal Server Error', message: 'internal error (see the API log)' };
  }
}
