/* banned.h - libc calls idsync does not use.
 *
 * Include last in every .c file. Each banned name becomes a compile error
 * that says what to use instead (the idea is Git's banned.h).
 *   strcpy, strcat, sprintf, vsprintf: unbounded writes -> struct strbuf, snprintf
 *   strncpy, strncat: silent truncation, no NUL guarantee -> struct strbuf
 *   strtok: hidden state -> strvec_split()
 *   atoi, atol, atoll, atof: no error detection -> strtol family with checks
 *   gets: unbounded
 *   gmtime, localtime, ctime, asctime: static buffers -> the _r variants
 */
#ifndef IDSYNC_UTIL_BANNED_H
#define IDSYNC_UTIL_BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) BANNED(strncat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef atol
#define atol(x) BANNED(atol)
#undef atoll
#define atoll(x) BANNED(atoll)
#undef atof
#define atof(x) BANNED(atof)
#undef gets
#define gets(x) BANNED(gets)
#undef gmtime
#define gmtime(t) BANNED(gmtime)
#undef localtime
#define localtime(t) BANNED(localtime)
#undef ctime
#define ctime(t) BANNED(ctime)
#undef asctime
#define asctime(t) BANNED(asctime)

#endif
