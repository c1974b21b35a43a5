/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The migrations of sql/, compiled into the build by cmake/embed_sql.cmake.
 * Private to store.
 */
#ifndef COFFER_STORE_MIGRATIONS_H
#define COFFER_STORE_MIGRATIONS_H

#include <stddef.h>

struct coffer_migration {
    int version;      /* NNN of NNN_name.sql; strictly increasing */
    const char *name; /* file name */
    const char *sql;  /* the file's bytes, NUL-terminated */
    size_t len;       /* bytes before the NUL */
};

extern const struct coffer_migration coffer_migrations[];
extern const size_t coffer_migrations_count;

#endif
