/* layout.c prints, as the compiler lays them out, the offsets and constants
 * that package phpstack reads a worker's stack with. It is not part of the
 * build: it is run by hand against the headers of the exact PHP build, from
 * Debian's phpX.Y-dev package (php-config gives the include path):
 *
 *   gcc -D_GNU_SOURCE $(php-config8.2 --includes) -o /tmp/layout testdata/layout.c
 *   /tmp/layout > testdata/layout-8.2.txt
 *
 * The layout-*.txt files are its output for each version; layout_test.go
 * checks the reader's tables against them. */
#include <stdio.h>
#include <stddef.h>
#include "php.h"
#include "zend_globals.h"
#include "zend_compile.h"
#include "zend_vm_opcodes.h"

#define OFF(type, field) printf("%-45s %zu\n", #type "." #field, offsetof(type, field))
#define SIZE(type) printf("%-45s %zu\n", "sizeof(" #type ")", sizeof(type))
#define CONST(name) printf("%-45s %lu\n", #name, (unsigned long)(name))

int main(void)
{
	printf("%-45s %s\n", "PHP_VERSION", PHP_VERSION);
	printf("%-45s %s\n", "ZEND_MODULE_BUILD_ID", ZEND_MODULE_BUILD_ID);
	OFF(zend_executor_globals, current_execute_data);
	OFF(zend_execute_data, opline);
	OFF(zend_execute_data, func);
	OFF(zend_execute_data, This.u1.type_info);
	OFF(zend_execute_data, prev_execute_data);
	SIZE(zend_execute_data);
	OFF(zend_function, type);
	OFF(zend_function, common.fn_flags);
	OFF(zend_function, common.function_name);
	OFF(zend_function, common.scope);
	OFF(zend_op_array, last);
	OFF(zend_op_array, opcodes);
	OFF(zend_op_array, filename);
	OFF(zend_op_array, line_start);
	OFF(zend_op_array, line_end);
	OFF(zend_class_entry, type);
	OFF(zend_class_entry, name);
	OFF(zend_string, gc.u.type_info);
	OFF(zend_string, len);
	OFF(zend_string, val);
	OFF(zend_op, extended_value);
	OFF(zend_op, lineno);
	OFF(zend_op, opcode);
	SIZE(zend_op);
	CONST(ZEND_INTERNAL_FUNCTION);
	CONST(ZEND_USER_FUNCTION);
	CONST(ZEND_EVAL_CODE);
	CONST(ZEND_INTERNAL_CLASS);
	CONST(ZEND_USER_CLASS);
	CONST(ZEND_ACC_CLOSURE);
	CONST(ZEND_CALL_CODE);
	CONST(ZEND_CALL_TOP);
	CONST(ZEND_CALL_CLOSURE);
	CONST(ZEND_INCLUDE_OR_EVAL);
	CONST(ZEND_EVAL);
	CONST(ZEND_INCLUDE);
	CONST(ZEND_INCLUDE_ONCE);
	CONST(ZEND_REQUIRE);
	CONST(ZEND_REQUIRE_ONCE);
	CONST(IS_STRING);
	CONST(IS_OBJECT);
	CONST(GC_TYPE_MASK);
	return 0;
}
