/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading one secret line from the operator: the token PIN prompt and the
 * officers' passphrases. The prompt is shown on /dev/tty and the line typed
 * there with echo off; the terminal gets its modes back on every path, a
 * signal included (the signal then takes effect). A caller may instead
 * accept one line of standard input when standard input is not a terminal,
 * for scripted use.
 *
 * The line only ever lives in a struct coffer_secret. No part of it is
 * written to an error detail, a log line or the terminal.
 */
#ifndef COFFER_TTY_H
#define COFFER_TTY_H

#include <stdbool.h>
#include <stddef.h>

#include "coffer/err.h"
#include "coffer/secret.h"

/*
 * What is read, and the codes its failures return: the caller's context
 * chooses them (the token PIN fails with COFFER_E_PIN whatever went wrong).
 */
struct coffer_tty_request {
    const char *prompt; /* shown before reading, e.g. "Token user PIN: " */
    const char *what;   /* names the secret in details: "PIN", "passphrase" */
    size_t max;         /* longest accepted line in bytes, 1..COFFER_SECRET_MAX */
    /*
     * When standard input is not a terminal, show the prompt on standard
     * error and read one line of standard input instead of /dev/tty. The
     * line is read byte by byte, so the next line stays for the next read.
     */
    bool stdin_unless_tty;
    /* No terminal, a read that fails, end of input before any byte, a signal. */
    enum coffer_err fail;
    /* An empty line, or one longer than max. */
    enum coffer_err refuse;
};

/*
 * Shows req->prompt and reads one line into *out, without its line ending
 * ("\n", "\r\n", or a final "\r" at end of input). A line longer than
 * req->max is read to its end and refused, so that its rest is not taken for
 * the next line. On success *out is a new secret of 1..req->max bytes; on
 * failure *out is NULL.
 *
 * Returns COFFER_OK, req->fail, req->refuse, COFFER_E_NOMEM, or
 * COFFER_E_INVALID for a missing argument or req->max out of range. If a
 * signal (SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP) arrives while the
 * terminal is read, the terminal is restored, the caller's disposition of
 * the signal takes effect, and req->fail is returned if the process goes on.
 * Call it from the thread that receives those signals, while no other thread
 * uses them.
 */
enum coffer_err coffer_tty_read_secret(const struct coffer_tty_request *req,
                                       struct coffer_secret **out) COFFER_MUST_USE;

#endif
