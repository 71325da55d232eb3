/* main.c - placeholder until cmd/ lands */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "idsync: not built yet\n");
    return 3;
}
