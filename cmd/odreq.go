package main
import ("context";"fmt";"time";"github.com/fpmguard/fpmguard/fastcgi")
func main(){ _, err := fastcgi.Client{Timeout: 5*time.Second}.Do(context.Background(), fastcgi.Address{Network:"unix",Addr:"/tmp/od/www.sock"}, fastcgi.Request{Path:"/a.php", Script:"/tmp/od/a.php"}); fmt.Println(err) }
