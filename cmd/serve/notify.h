/*
 * notify.h - the systemd readiness protocol, by hand (no libsystemd).
 */
#ifndef KYRO_SERVE_NOTIFY_H
#define KYRO_SERVE_NOTIFY_H

/* Send STATE (e.g. "READY=1") to $NOTIFY_SOCKET when set: one datagram
 * on an AF_UNIX socket, abstract when the name starts with '@'.  Returns
 * 0, or -1 (errno set); without $NOTIFY_SOCKET, 0. */
int notify_send(const char *state);

#endif
