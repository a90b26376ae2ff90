/*
 * banned.h - functions that overflow buffers or hide state, made compile
 * errors (the idea of git's banned.h).  Use snprintf and memcpy with sizes.
 */
#ifndef KYRO_BANNED_H
#define KYRO_BANNED_H

#define BANNED(func) sorry_##func##_is_banned_in_kyrodb

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)

#endif
