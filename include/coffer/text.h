/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text checks shared by every parser of outside input: descriptions,
 * purposes and names must be valid UTF-8 and free of control characters
 * before they reach a log line, an audit row or a terminal.
 */
#ifndef COFFER_TEXT_H
#define COFFER_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether the len bytes at s are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF) without control characters (U+0000 to
 * U+001F, U+007F to U+009F), and 1 <= len <= max.
 */
bool coffer_text_ok(const char *s, size_t len, size_t max);

/* Whether the len bytes at s are well-formed UTF-8 (control characters allowed). */
bool coffer_utf8_ok(const char *s, size_t len);

#endif
