package phpstack

// layout is where one PHP version keeps what the reader follows, in bytes
// from the start of each structure, for an NTS (non thread-safe), non-debug
// build on x86_64. Within a minor version the layout does not change: PHP
// keeps the engine's ABI for extensions across patch releases, and names
// it with the module API number (ZEND_MODULE_API_NO), which the reader
// checks along with the version.
//
// Sources, for each version: php-src's Zend/zend_globals.h (struct
// _zend_executor_globals), Zend/zend_compile.h (struct _zend_execute_data,
// union _zend_function with zend_op_array's common part, struct
// _zend_op_array, struct _zend_op, the ZEND_CALL_* flags), Zend/zend.h
// (struct _zend_class_entry) and Zend/zend_types.h (struct _zend_string,
// zend_refcounted_h), of the releases 7.4.33, 8.2.36 and 8.4.27, as
// Debian's php7.4-dev, php8.2-dev and php8.4-dev install them under
// /usr/include/php/<API>/ (8.2's also read in php-src's own tree, and
// sapi/fpm/fpm/fpm_php_trace.c for how php-fpm's slowlog walks the same
// structures). The offsets were laid out by hand from those headers, then
// checked against the compiler's layout: testdata/layout.c, built against
// each version's headers with the php_config.h of Debian's build
// (ZEND_SIGNALS on, ZTS and ZEND_DEBUG off), printed testdata/layout-*.txt,
// and layout_test.go holds these tables to those files. The reader was
// then run against Debian's php-fpm of each version (7.4 and 8.4 in their
// own roots), with opcache off, on and with the JIT.
type layout struct {
	minor string // "8.2"
	api   string // ZEND_MODULE_API_NO, e.g. "20220829"

	// _zend_executor_globals: current_execute_data comes after the
	// symbol-table cache, two HashTables, the bailout, the function,
	// class and constant tables and the VM stack's pointers; none of the
	// fields before it depends on ZEND_SIGNALS or the platform on Linux,
	// so it is 488 in all three versions.
	egCurrentExecuteData uint64

	// _zend_execute_data: opline, call, return_value, func, This (a zval
	// whose u1.type_info carries the call info), prev_execute_data.
	// 8.0 added extra_named_params at the end, hence the sizes 72 and 80.
	exOpline, exFunc, exCallInfo, exPrev uint64
	exSize                               uint64

	// zend_function's common part: type, arg_flags[3], fn_flags,
	// function_name, scope.
	fnType, fnName, fnScope uint64

	// zend_op_array past the common part: last and opcodes, filename.
	// They move with each version: 8.0 added attributes to the common
	// part, 8.2 moved run_time_cache into it, 8.4 added doc_comment and
	// prop_info (property hooks) to it.
	opLast, opOpcodes, opFilename uint64
	opArrayRead                   uint64 // bytes read of a user function: up to filename

	// _zend_class_entry: type (char), then name.
	ceType, ceName uint64

	// _zend_string: gc (refcount, type_info), h, len, val[].
	strTypeInfo, strLen, strVal uint64

	// _zend_op: handler, op1, op2, result, extended_value, lineno,
	// opcode, the operand types; 32 bytes.
	zopExtendedValue, zopLineno, zopOpcode, zopSize uint64
}

// The layouts the reader knows, by module API number.
var layouts = map[string]*layout{
	"20190902": {
		minor: "7.4", api: "20190902",
		egCurrentExecuteData: 488,
		exOpline:             0, exFunc: 24, exCallInfo: 40, exPrev: 48, exSize: 72,
		fnType: 0, fnName: 8, fnScope: 16,
		opLast: 60, opOpcodes: 64, opFilename: 136, opArrayRead: 144,
		ceType: 0, ceName: 8,
		strTypeInfo: 4, strLen: 16, strVal: 24,
		zopExtendedValue: 20, zopLineno: 24, zopOpcode: 28, zopSize: 32,
	},
	"20220829": {
		minor: "8.2", api: "20220829",
		egCurrentExecuteData: 488,
		exOpline:             0, exFunc: 24, exCallInfo: 40, exPrev: 48, exSize: 80,
		fnType: 0, fnName: 8, fnScope: 16,
		opLast: 80, opOpcodes: 88, opFilename: 152, opArrayRead: 160,
		ceType: 0, ceName: 8,
		strTypeInfo: 4, strLen: 16, strVal: 24,
		zopExtendedValue: 20, zopLineno: 24, zopOpcode: 28, zopSize: 32,
	},
	"20240924": {
		minor: "8.4", api: "20240924",
		egCurrentExecuteData: 488,
		exOpline:             0, exFunc: 24, exCallInfo: 40, exPrev: 48, exSize: 80,
		fnType: 0, fnName: 8, fnScope: 16,
		opLast: 96, opOpcodes: 104, opFilename: 168, opArrayRead: 176,
		ceType: 0, ceName: 8,
		strTypeInfo: 4, strLen: 16, strVal: 24,
		zopExtendedValue: 20, zopLineno: 24, zopOpcode: 28, zopSize: 32,
	},
}

// Constants of the engine, the same in 7.4, 8.2 and 8.4 (Zend/zend_compile.h,
// Zend/zend_types.h, Zend/zend_vm_opcodes.h; checked by layout_test.go).
const (
	internalFunction = 1 // ZEND_INTERNAL_FUNCTION
	userFunction     = 2 // ZEND_USER_FUNCTION
	evalCode         = 4 // ZEND_EVAL_CODE

	internalClass = 1 // ZEND_INTERNAL_CLASS
	userClass     = 2 // ZEND_USER_CLASS

	// The call info, in the high bits of This.u1.type_info.
	callCode    = 1 << 16 // ZEND_CALL_CODE: a file's code, not a function
	callTop     = 1 << 17 // ZEND_CALL_TOP: called from C, not from PHP code
	callClosure = 1 << 22 // ZEND_CALL_CLOSURE

	includeOrEval = 73 // ZEND_INCLUDE_OR_EVAL, the opcode

	// ZEND_INCLUDE_OR_EVAL's extended_value.
	incEval        = 1 << 0 // ZEND_EVAL
	incInclude     = 1 << 1 // ZEND_INCLUDE
	incIncludeOnce = 1 << 2 // ZEND_INCLUDE_ONCE
	incRequire     = 1 << 3 // ZEND_REQUIRE
	incRequireOnce = 1 << 4 // ZEND_REQUIRE_ONCE

	isString   = 6  // IS_STRING, a zend_string's GC type
	isObject   = 8  // IS_OBJECT, This's type when the call has $this
	gcTypeMask = 15 // GC_TYPE_MASK
)
