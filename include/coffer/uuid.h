/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Identifiers of orgs, projects, credentials and keys: 16-byte UUIDs, held in
 * binary and written in their canonical 36-character text form.
 */
#ifndef COFFER_UUID_H
#define COFFER_UUID_H

#include <stdbool.h>

#include "coffer/err.h"

#define COFFER_UUID_STR_LEN 37 /* 36 characters and the NUL */

struct coffer_uuid {
    unsigned char b[16];
};

/* Parses the canonical form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case). */
enum coffer_err coffer_uuid_parse(const char *s, struct coffer_uuid *out) COFFER_MUST_USE;

/* Writes the canonical lower-case form into out. */
void coffer_uuid_format(const struct coffer_uuid *u, char out[COFFER_UUID_STR_LEN]);

bool coffer_uuid_equal(const struct coffer_uuid *a, const struct coffer_uuid *b);

#endif
