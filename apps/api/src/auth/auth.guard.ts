import { CanActivate, ExecutionContext, ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Role } from '@vmkeep/contracts';
import { AuthService } from './auth.service';
import { AuthUser, hasRole, IS_PUBLIC, MIN_ROLE } from './auth.decorators';

/** Global guard: a valid bearer token on every route not marked @Public(), and the role @Roles() asks for. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets)) return true;
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined>; user?: AuthUser }>();
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    if (!match) throw new UnauthorizedException('missing bearer token (Authorization: Bearer <token>)');
    const user = await this.auth.authenticate(match[1]);
    if (!user) throw new UnauthorizedException('invalid or expired token');
    request.user = user;
    const needed = this.reflector.getAllAndOverride<Role | undefined>(MIN_ROLE, targets);
    if (needed && !hasRole(user.role, needed)) {
      throw new ForbiddenException(`this action needs the ${needed} role (you are ${user.role})`);
    }
    return true;
  }
}
