#include <stdio.h>
int main(void)
{
    fputs("test not written yet\n", stderr);
    return 1;
}
