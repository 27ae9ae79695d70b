import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Role } from '@vmkeep/contracts';

export const IS_PUBLIC = 'vmkeep:public';
export const MIN_ROLE = 'vmkeep:min-role';

/** The caller as the auth guard found it. */
export interface AuthUser {
  id: string;
  username: string;
  role: Role;
  /** Id of the token the request came with. */
  tokenId: string;
}

/** Route needs no token (health, login). */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(IS_PUBLIC, true);

/** Least role the route needs; roles are ordered admin > operator > viewer. Without it any signed-in user may call. */
export const Roles = (role: Role): MethodDecorator & ClassDecorator => SetMetadata(MIN_ROLE, role);

/** The authenticated caller of this request. */
export const CurrentUser = createParamDecorator((_data: unknown, ctx: ExecutionContext): AuthUser => {
  return ctx.switchToHttp().getRequest<{ user: AuthUser }>().user;
});

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function hasRole(actual: Role, needed: Role): boolean {
  return RANK[actual] >= RANK[needed];
}
