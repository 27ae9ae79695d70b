/** Misuse of the NBD server API (bad options, duplicate export names). Protocol errors go to the client instead. */
export class NbdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdError';
  }
}
