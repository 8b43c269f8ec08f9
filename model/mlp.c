/* placeholder: being written */
typedef int fv__placeholder_t;
