import { ArgumentMetadata, BadRequestException, Injectable, PipeTransform } from '@nestjs/common';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Route parameters that name a row: `id` and every `somethingId`. */
export function isIdParameter(name: string | undefined): name is string {
  return name !== undefined && (name === 'id' || /^[a-z][A-Za-z0-9]*Id$/.test(name));
}

/**
 * Global pipe: every id route parameter (`:id`, `:tokenId`, `:policyId`…) must be a UUID, else 400 naming the
 * parameter — before any controller or database sees it, whether or not the route added a pipe of its own.
 */
@Injectable()
export class UuidParamsPipe implements PipeTransform<unknown> {
  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    if (metadata.type !== 'param' || !isIdParameter(metadata.data)) return value;
    if (typeof value !== 'string' || !UUID.test(value)) {
      throw new BadRequestException(`route parameter ${metadata.data} must be a UUID`);
    }
    return value;
  }
}
