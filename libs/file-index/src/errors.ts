/** Errors of the file index. */

export class FileIndexError extends Error {
  constructor(
    message: string,
    /** Stable code: PAGE_CORRUPT, PAGE_MISSING, RECORD_CORRUPT, BAD_PATTERN, BAD_POINT_ID, ENCRYPTED. */
    readonly code: string,
  ) {
    super(message);
    this.name = 'FileIndexError';
  }
}

/** A search pattern that cannot be used (empty, too long, unbalanced `[`). */
export class SearchPatternError extends FileIndexError {
  constructor(message: string) {
    super(message, 'BAD_PATTERN');
    this.name = 'SearchPatternError';
  }
}
