import SQLite from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isDatabaseError, isDatabaseUnavailable } from '../../src/db/database.ts';

const postgresError = (code: string) => Object.assign(new pg.DatabaseError('failed', 0, 'error'), { code });

describe('isDatabaseError: the database in trouble (retry later) or a row at fault (keep it with its error)', () => {
  it.each(['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR_FSYNC', 'SQLITE_FULL', 'SQLITE_READONLY', 'SQLITE_CANTOPEN', 'SQLITE_CORRUPT', 'SQLITE_CONSTRAINT_TRIGGER'])(
    'SQLite %s: the database',
    (code) => expect(isDatabaseError(new SQLite.SqliteError('failed', code))).toBe(true),
  );

  it.each(['SQLITE_ERROR', 'SQLITE_PERM'])('SQLite %s (a missing table, say): the database or its schema', (code) =>
    expect(isDatabaseError(new SQLite.SqliteError('failed', code))).toBe(true),
  );

  it.each(['SQLITE_CONSTRAINT_NOTNULL', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_MISMATCH', 'SQLITE_TOOBIG', 'SQLITE_RANGE'])(
    'SQLite %s: the row',
    (code) => expect(isDatabaseError(new SQLite.SqliteError('failed', code))).toBe(false),
  );

  it.each(['08006', '08001', '40001', '40P01', '53300', '57P01', '58030', 'XX000', '55P03', 'P0001'])('PostgreSQL %s: the database', (code) =>
    expect(isDatabaseError(postgresError(code))).toBe(true),
  );

  it.each(['42501', '42P01', '42703', '0A000', '55006'])('PostgreSQL %s (a lost grant, a missing table): the database or its schema', (code) =>
    expect(isDatabaseError(postgresError(code))).toBe(true),
  );

  it.each(['23502', '23505', '22001', '22P02'])('PostgreSQL %s: the row', (code) =>
    expect(isDatabaseError(postgresError(code))).toBe(false),
  );

  it.each([
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
  ])('a lost connection ($message): the database', (error) => expect(isDatabaseError(error)).toBe(true));

  it.each([new TypeError('x is undefined'), new SyntaxError('Unexpected token'), 'a string', null])('%s: not the database', (error) =>
    expect(isDatabaseError(error)).toBe(false),
  );
});

describe('isDatabaseUnavailable: worth sending the request again (503), or a defect (500)', () => {
  it.each(['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR_FSYNC', 'SQLITE_FULL', 'SQLITE_READONLY', 'SQLITE_CANTOPEN', 'SQLITE_NOMEM'])('SQLite %s: unavailable', (code) =>
    expect(isDatabaseUnavailable(new SQLite.SqliteError('failed', code))).toBe(true),
  );

  it.each(['SQLITE_ERROR', 'SQLITE_CORRUPT', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_MISMATCH'])('SQLite %s (a bad query or schema, a row): a defect', (code) =>
    expect(isDatabaseUnavailable(new SQLite.SqliteError('failed', code))).toBe(false),
  );

  it.each(['08006', '08001', '53300', '57P01', '57P03', '57014', '58030', '40001', '40P01', '55P03', '25006', '25P03'])('PostgreSQL %s: unavailable', (code) =>
    expect(isDatabaseUnavailable(postgresError(code))).toBe(true),
  );

  it.each(['42601', '42P01', '42703', 'XX000', '23505', '22P02', '40002', '55006', '25001'])('PostgreSQL %s (a bad query or schema, a row): a defect', (code) =>
    expect(isDatabaseUnavailable(postgresError(code))).toBe(false),
  );

  it.each([
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
  ])('a lost connection ($message): unavailable', (error) => expect(isDatabaseUnavailable(error)).toBe(true));

  it.each([new TypeError('x is undefined'), 'a string', null])('%s: a defect', (error) => expect(isDatabaseUnavailable(error)).toBe(false));
});
