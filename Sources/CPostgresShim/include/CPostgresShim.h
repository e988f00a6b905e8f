/// CPostgresShim: Debian's libpq (libpq5, the client library of PostgreSQL and of Postfix's own
/// pgsql: tables), for the rows of `--database`. Swift calls libpq's functions directly; this
/// module only makes its header importable (SplitDatabase/PostgresLink.swift is the one caller).
#ifndef CPOSTGRESSHIM_H
#define CPOSTGRESSHIM_H

#include <postgresql/libpq-fe.h>

/// libpq's "no connection" socket value, for Swift (a macro-free constant).
static const int cpostgres_invalid_socket = -1;

#endif
