"""The article-style test set, written by hand: groups of 3-5 candidates, one right answer each.

``python bench/data/article_groups.py`` writes the two BEIR-layout folders ``article-dev`` and
``article-test`` beside this file (odd-numbered groups to dev, even-numbered to test). The
folders are committed; this file is their source. See ``article-dev/SOURCE.md``.

Kinds, as in the Qwen3-Reranker article: ``long-tail`` (domain jargon and abbreviations),
``two-senses`` (a word with two meanings: only one candidate is about the sense the user has in
mind, given by the search context), ``vague`` (pronouns or no object at all: the context names
the subject). Every group's wrong candidates are written to share words with the query (the
traps BM25 falls into); the right one often says it in other words.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# (kind, query, context or None, right (title, text), wrong [(title, text), ...])
Group = tuple[str, str, str | None, tuple[str, str], list[tuple[str, str]]]

GROUPS: list[Group] = [
    # 1
    (
        "vague",
        "怎么重启",
        "Docker 容器",
        (
            "Docker 容器的重启",
            "用 docker restart <容器名> 重启一个容器；docker compose restart 重启整个应用的所有容器。",
        ),
        [
            ("Windows 电脑怎么重启", "点击开始菜单，选择电源，然后点击重启。电脑重启前请保存文件。"),
            ("路由器怎么重启", "拔掉路由器电源，等待三十秒再插上，路由器就会重启。"),
            ("手机怎么重启", "长按电源键和音量键，屏幕出现关机选项后选择重启。"),
        ],
    ),
    # 2
    (
        "long-tail",
        "it doesn't support fp16",
        "NVIDIA T4 GPU",
        (
            "Half precision on the T4",
            "The NVIDIA T4 runs half precision (FP16) tensor core math; if a framework reports no half-precision support, update the driver and CUDA toolkit.",
        ),
        [
            (
                "fp16 in the image format spec",
                "The texture format fp16 stores one 16-bit float per channel; it doesn't support alpha premultiplication.",
            ),
            (
                "Why my browser doesn't support WebGL",
                "Some browsers doesn't support WebGL when hardware acceleration is off in the settings.",
            ),
            ("It support tickets", "The IT support desk answers tickets within one business day."),
        ],
    ),
    # 3
    (
        "long-tail",
        "LoRA rank多少合适",
        None,
        (
            "LoRA 低秩适配的秩怎么选",
            "LoRA low-rank adapter 的 rank 常用 8 到 64：小模型和小数据集用 8 或 16，数据多、任务难时再加大。",
        ),
        [
            ("LoRa 无线通信", "LoRa 是一种远距离低功耗的无线通信技术，常用于物联网传感器。"),
            ("网站排名多少合适", "网站在搜索引擎的 rank 排名受内容质量、外链数量和加载速度影响。"),
            ("LoRA 模型下载", "在模型社区可以下载别人训练好的 LoRA 文件，放到 models/Lora 文件夹即可使用。"),
        ],
    ),
    # 4
    (
        "two-senses",
        "苹果手机怎么清理后台",
        None,
        (
            "iPhone 关闭后台应用",
            "在 iPhone 上从屏幕底部向上轻扫并停顿，打开应用切换器，再向上滑动应用卡片即可关闭后台应用。",
        ),
        [
            ("苹果怎么清洗", "苹果买回来先用清水冲洗，再用盐搓一搓表皮，可以去掉表面的蜡和农药。"),
            ("手机后台清理软件推荐", "安卓手机可以安装清理大师，一键清理后台和垃圾文件。"),
            ("苹果的营养", "苹果富含膳食纤维和维生素C，每天吃一个苹果有益健康。"),
        ],
    ),
    # 5
    (
        "long-tail",
        "k8s pod OOMKilled",
        None,
        (
            "Kubernetes: a container killed for running out of memory",
            "When a container uses more memory than its limit, the kernel kills it and Kubernetes reports the reason OOMKilled; raise resources.limits.memory or reduce the heap.",
        ),
        [
            ("Pod racing on K8S tracks", "The pod class at K8S raceway is for single-seat karts."),
            (
                "OOM errors in Java",
                "A Java OutOfMemoryError means the JVM heap is full; it is not a pod event.",
            ),
            ("Pods of whales", "A pod of killer whales hunts together and shares food."),
        ],
    ),
    # 6
    (
        "two-senses",
        "install python on my laptop",
        None,
        (
            "Installing the Python interpreter",
            "Download the installer for the programming language from python.org, or use the system package manager; then create a virtual environment with python -m venv.",
        ),
        [
            (
                "Install a python enclosure",
                "To install a ball python's enclosure on my shelf, fit a heat mat under one third of the tank and a thermostat.",
            ),
            (
                "Python snake care",
                "A python needs a warm hide, a cool hide and a water bowl large enough to soak in.",
            ),
            (
                "Python install of a reptile heat lamp",
                "Install the heat lamp over the basking spot of your python, out of its reach.",
            ),
        ],
    ),
    # 7
    (
        "vague",
        "how do I reset it",
        "home Wi-Fi router",
        (
            "Factory reset of a Wi-Fi router",
            "Hold the small reset button on the back of the router for ten seconds until the lights blink; the router returns to its factory settings.",
        ),
        [
            (
                "How do I reset my password",
                "Click Forgot password on the sign-in page and follow the link sent to your email.",
            ),
            ("Reset a watch", "Pull the crown out to the second position and turn it to reset the time."),
            (
                "How do I reset the TV",
                "Open Settings, then General, then Reset to restore the TV to factory defaults.",
            ),
        ],
    ),
    # 8
    (
        "long-tail",
        "显存不够怎么办",
        None,
        (
            "GPU 显存不足的处理",
            "出现 CUDA out of memory 时，减小 batch size、打开梯度检查点、用 bf16 或 8 位量化，都能降低 GPU memory 占用。",
        ),
        [
            ("内存不够怎么办", "电脑内存不够时，可以关闭不用的程序，或者加装一根内存条。"),
            ("手机存储空间不够怎么办", "清理相册和聊天记录，把照片备份到云端，手机存储空间就够了。"),
            ("钱不够怎么办", "做一个预算，记录每天的开销，减少不必要的消费。"),
        ],
    ),
    # 9
    (
        "two-senses",
        "java beans in my code",
        None,
        (
            "JavaBeans components",
            "A JavaBean is a reusable Java class with a no-argument constructor, private fields and getter and setter methods, used by frameworks to bind properties.",
        ),
        [
            ("Java coffee beans", "Java beans from Indonesia give a full-bodied coffee with low acidity."),
            (
                "Roasting Java beans at home",
                "My code for a dark roast: roast the green Java beans until the second crack.",
            ),
            ("Beans and rice", "Black beans and rice are a classic dish in many countries."),
        ],
    ),
    # 10
    (
        "vague",
        "它支持多少并发",
        "Redis",
        (
            "Redis 的并发能力",
            "Redis 单实例通常能处理每秒十万级别的请求，maxclients 默认允许一万个客户端连接。",
        ),
        [
            ("多少并发才算高并发", "一般来说每秒上千次请求的系统就可以称为高并发系统。"),
            ("Nginx 并发连接数", "Nginx 的并发连接数由 worker_processes 乘以 worker_connections 决定。"),
            ("它的意思", "“它”是一个代词，用来指代人以外的事物。"),
        ],
    ),
    # 11
    (
        "long-tail",
        "HPA not scaling",
        None,
        (
            "Horizontal pod autoscaling does not add replicas",
            "If the horizontal pod autoscaler never scales, check that metrics-server runs and that the pods set CPU requests; without requests the utilization is unknown.",
        ),
        [
            ("HPA home loans", "The HPA loan scheme helps first-time buyers with the deposit."),
            ("Scaling a fish", "Scaling a fish is easier under running water with the back of a knife."),
            ("Not scaling in images", "When an image is not scaling in CSS, set max-width to 100%."),
        ],
    ),
    # 12
    (
        "two-senses",
        "小米多少钱一斤",
        None,
        ("小米（粟米）的价格", "黄小米是粟去壳后的粮食，市场零售价一般在每斤五到八元，有机小米更贵。"),
        [
            ("小米手机多少钱", "小米 14 手机起售价 3999 元，有多种颜色可选。"),
            ("小米公司股价", "小米集团在港股上市，股价每天波动。"),
            ("小米电视多少钱一台", "小米电视 55 英寸的价格在两千元左右。"),
        ],
    ),
    # 13
    (
        "vague",
        "why is this slow",
        "PostgreSQL query",
        (
            "Finding out why a PostgreSQL query is slow",
            "Run EXPLAIN ANALYZE on the query to see the plan; a sequential scan on a large table usually means an index is missing or statistics are stale (run ANALYZE).",
        ),
        [
            (
                "Why is this song so slow",
                "The tempo of this song is 60 beats per minute, slow like a ballad.",
            ),
            ("Why is my laptop slow", "Too many startup programs and a full disk make a laptop slow."),
            ("Slow cooker recipes", "This slow cooker stew is ready after eight hours on low."),
        ],
    ),
    # 14
    (
        "long-tail",
        "QLoRA 需要多少显存",
        None,
        (
            "QLoRA 微调的显存需求",
            "QLoRA 把基础模型量化成 4 位再训练 LoRA adapter，7B 模型大约需要 6 GB GPU memory，65B 模型一张 48 GB 的卡就够。",
        ),
        [
            ("显卡显存多少够用", "玩游戏的话 8 GB 显存的显卡基本够用，4K 分辨率建议 12 GB。"),
            ("LoRa 网关需要多少功耗", "LoRa 网关的功耗一般在五瓦左右，可用太阳能供电。"),
            ("手机需要多少内存", "日常使用的手机 8 GB 运行内存就够了。"),
        ],
    ),
    # 15
    (
        "two-senses",
        "mouse not moving on screen",
        None,
        (
            "Computer mouse pointer does not move",
            "If the pointer does not move, replace the mouse batteries or try another USB port; a wireless mouse also needs its receiver paired again.",
        ),
        [
            (
                "My pet mouse is not moving",
                "A pet mouse that is not moving may be cold or ill; keep it warm and see a vet.",
            ),
            ("Mouse traps", "Put the trap along the wall where the mouse runs; peanut butter works as bait."),
            ("Moving house with pets", "When moving house, keep small pets like a mouse in a quiet carrier."),
        ],
    ),
    # 16
    (
        "vague",
        "怎么升级",
        "Ubuntu 系统",
        (
            "Ubuntu 升级到新版本",
            "先运行 sudo apt update && sudo apt upgrade 更新软件包，再用 do-release-upgrade 升级到新的 Ubuntu 版本。",
        ),
        [
            ("游戏角色怎么升级", "完成主线任务和每日任务可以获得经验，角色就能快速升级。"),
            ("会员怎么升级", "在个人中心点击会员，选择更高等级并支付差价即可升级。"),
            ("手机系统怎么升级", "打开设置，选择系统更新，下载安装包后手机会自动重启完成升级。"),
        ],
    ),
    # 17
    (
        "long-tail",
        "PVC stuck pending",
        None,
        (
            "A persistent volume claim that stays Pending",
            "A persistent volume claim stays Pending when no storage class can provision it: check the storageClassName and that a provisioner is installed.",
        ),
        [
            ("PVC pipes stuck together", "Two PVC pipes stuck with cement cannot be pulled apart; cut them."),
            ("Pending payment", "A payment stays pending for up to three business days."),
            ("Stuck windows", "A stuck window sash can be freed with a putty knife along the paint line."),
        ],
    ),
    # 18
    (
        "two-senses",
        "spring boot app won't start",
        None,
        (
            "Spring Boot applications",
            "Spring Boot builds stand-alone Java applications with an embedded web server; start one with the Spring Initializr and run it with mvn spring-boot:run.",
        ),
        [
            ("Spring boot sale", "Our spring boot sale has leather boots at 30% off."),
            ("Boots for spring hiking", "Light waterproof boots are best for spring hiking on muddy trails."),
            ("Spring cleaning the boot of a car", "Empty the boot of the car and vacuum it for spring."),
        ],
    ),
    # 19
    (
        "vague",
        "does it need a license",
        "Elasticsearch",
        (
            "Elasticsearch licensing",
            "Elasticsearch's free Basic tier needs no paid subscription; security, machine learning and other features come with Platinum or Enterprise licenses. The source is under SSPL, Elastic License 2.0 and AGPL.",
        ),
        [
            (
                "Does a drone need a license",
                "In many countries a drone over 250 g needs a registration and a pilot certificate.",
            ),
            ("Do I need a license to fish", "Anyone over 16 needs a fishing license in most states."),
            (
                "Driver license renewal",
                "You can renew a driver license online up to six months before it expires.",
            ),
        ],
    ),
    # 20
    (
        "long-tail",
        "bf16训练loss变成nan",
        None,
        (
            "bfloat16 训练出现 NaN",
            "bfloat16 训练出现 loss NaN 时，先降低学习率、打开梯度裁剪，检查 softmax 和 layer norm 是否在 float32 中计算。",
        ),
        [
            ("奶奶的训练营", "奶奶参加了社区的太极训练营，每天早上六点集合。"),
            ("BF16 发动机参数", "BF16 型号发动机排量 1.6 升，适合家用轿车。"),
            ("训练 loss 曲线怎么看", "训练 loss 持续下降说明模型在学习，验证 loss 上升说明可能过拟合。"),
        ],
    ),
    # 21
    (
        "two-senses",
        "chrome cookies expire",
        None,
        (
            "When browser cookies expire in Chrome",
            "A cookie set with Expires or Max-Age is deleted by Chrome at that time; a cookie without them is a session cookie, gone when the browser closes. See them in DevTools, Application, Cookies.",
        ),
        [
            (
                "How long homemade cookies last",
                "Homemade cookies keep a week in a tin before they go stale; they don't really expire.",
            ),
            ("Chrome-plated cookie cutters", "Chrome cookie cutters do not rust and keep sharp edges."),
            (
                "Cookies expire date on the packet",
                "The best before date on a packet of cookies is about six months after baking.",
            ),
        ],
    ),
    # 22
    (
        "vague",
        "这个报错怎么解决",
        "npm install EACCES",
        (
            "npm install 的 EACCES 权限错误",
            "npm install 报 EACCES 是全局目录没有写权限：用 nvm 安装 Node，或把 npm 的 prefix 改到用户目录，不要用 sudo。",
        ),
        [
            ("这个字怎么读", "这个字读作 jiě，意思是解开。"),
            ("打印机报错怎么解决", "打印机报错时先关机重启，再检查是否卡纸。"),
            ("报错信息翻译", "把报错信息复制到翻译软件里，可以知道它的意思。"),
        ],
    ),
    # 23
    (
        "long-tail",
        "TTFT too high vllm",
        None,
        (
            "Time to first token in vLLM",
            "A long time to first token in vLLM comes from prefill: enable chunked prefill and prefix caching, and lower max-num-batched-tokens so decode steps are not starved.",
        ),
        [
            ("TTFT tennis tournament", "The TTFT junior tournament is too high a level for beginners."),
            ("High blood pressure", "Blood pressure that is too high should be checked by a doctor."),
            ("VLLM fan club", "The VLLM fan club meets every Friday."),
        ],
    ),
    # 24
    (
        "two-senses",
        "金融 bank 利率",
        None,
        (
            "银行（bank）存款利率",
            "国有银行一年期定期存款利率约为 1.5%，活期存款利率 0.2% 左右，各家 bank 略有不同。",
        ),
        [
            ("河岸 bank 的侵蚀", "河流的 bank 受水流冲刷，会慢慢后退，形成弯道。"),
            ("Power bank 充电宝", "power bank 是移动电源，容量 10000 毫安时的最常见。"),
            ("利率是什么", "利率是利息和本金的比例，分为单利和复利。"),
        ],
    ),
    # 25
    (
        "vague",
        "how long does it take",
        "Let's Encrypt certificate renewal",
        (
            "Let's Encrypt renewal timing",
            "Certbot renews a Let's Encrypt certificate within seconds; certificates last 90 days and certbot renew runs twice a day, renewing in the last 30 days.",
        ),
        [
            ("How long does it take to boil an egg", "A soft egg takes six minutes, a hard egg ten."),
            (
                "How long does it take to learn guitar",
                "Most people play simple songs after three months of practice.",
            ),
            ("How long does a passport take", "A passport takes four to six weeks to arrive."),
        ],
    ),
    # 26
    (
        "long-tail",
        "nccl timeout 多机训练",
        None,
        (
            "多机分布式训练的 NCCL 超时",
            "多机训练报 NCCL timeout，多半是网卡选错或防火墙：设置 NCCL_SOCKET_IFNAME 和 NCCL_DEBUG=INFO 查看，必要时调大 timeout。",
        ),
        [
            ("多机位拍摄", "多机位拍摄需要统一时间码，后期剪辑更方便。"),
            ("训练超时补助", "员工参加培训超过八小时可以申请超时补助。"),
            ("游戏连接超时", "游戏提示连接超时，可以切换网络或重启路由器。"),
        ],
    ),
    # 27
    (
        "two-senses",
        "rust remove unused code",
        None,
        (
            "Removing unused code in Rust",
            "cargo fix and cargo clippy remove or flag unused imports and dead code in a Rust crate; cargo machete finds unused dependencies.",
        ),
        [
            (
                "Remove rust from unused tools",
                "Unused tools left in a damp shed rust; remove it with a phosphoric acid remover.",
            ),
            (
                "Rust remover code of practice",
                "The code of practice for rust remover asks painters to wear gloves.",
            ),
            ("Rust on bicycle chains", "Remove rust from a bike chain with a wire brush and oil."),
        ],
    ),
    # 28
    (
        "vague",
        "它的作者是谁",
        "《三体》",
        ("《三体》的作者刘慈欣", "科幻小说《三体》由中国作家刘慈欣创作，2015 年获得雨果奖最佳长篇小说奖。"),
        [
            ("作者是谁怎么查", "在图书馆目录里输入书名，就能查到作者是谁。"),
            ("三体运动", "三体问题研究三个天体在万有引力下的运动。"),
            ("它的用法", "“它”用于指代动物或事物。"),
        ],
    ),
    # 29
    (
        "long-tail",
        "tokenizer pad token missing",
        None,
        (
            "Setting a padding token for decoder-only models",
            "Decoder-only tokenizers such as Llama's ship without a padding token; set tokenizer.pad_token = tokenizer.eos_token (and the model config's pad_token_id) before batching.",
        ),
        [
            ("Missing token in a board game", "If a token is missing from the box, use a coin instead."),
            ("Pad thai recipe", "Soak the rice noodles, then stir-fry with tamarind and egg."),
            (
                "Token missing from crypto wallet",
                "A token missing from the wallet may need its contract address added.",
            ),
        ],
    ),
    # 30
    (
        "two-senses",
        "how fast can a jaguar run in the wild",
        None,
        (
            "How fast a jaguar runs",
            "The jaguar, the largest cat of the Americas, sprints at about 80 km/h over short distances but ambushes rather than chases its prey.",
        ),
        [
            ("How fast can a Jaguar F-Type go", "The Jaguar F-Type R can run at a top speed of 300 km/h."),
            ("Jaguar in the wild rally", "The Jaguar team won the Wild Rally in Kenya in a fast run."),
            ("Jaguar car dealers", "Find a Jaguar dealer near you for a test drive."),
        ],
    ),
    # 31
    (
        "vague",
        "怎么卸载",
        "Nvidia 驱动（Linux）",
        (
            "Linux 上卸载 Nvidia 驱动",
            "Ubuntu 上用 sudo apt purge 'nvidia-*' 卸载 Nvidia 驱动；用 .run 文件安装的，运行 nvidia-uninstall。",
        ),
        [
            ("手机应用怎么卸载", "长按应用图标，选择卸载即可。"),
            ("货车怎么卸载货物", "卸载货物时要先固定车辆，再按顺序搬运。"),
            ("Windows 软件怎么卸载", "打开控制面板中的程序和功能，选中软件后点击卸载。"),
        ],
    ),
    # 32
    (
        "long-tail",
        "ES heap size",
        None,
        (
            "Sizing the Elasticsearch JVM heap",
            "Set the Elasticsearch JVM heap with -Xms and -Xmx to the same value, no more than half of the RAM and under about 31 GB so compressed object pointers stay on.",
        ),
        [
            ("ES file explorer size", "ES File Explorer shows folder sizes in its analysis tool."),
            ("Heap size of a compost pile", "A compost heap should be at least one cubic metre to heat up."),
            ("Spanish (ES) clothing sizes", "ES size 40 is a medium in most shops."),
        ],
    ),
    # 33
    (
        "two-senses",
        "苹果股价",
        None,
        ("苹果公司（AAPL）股价", "苹果公司在纳斯达克上市，股票代码 AAPL，市值超过三万亿美元。"),
        [
            ("苹果价格", "今年红富士苹果的价格每斤四元左右。"),
            ("苹果怎么保存", "苹果放在冰箱冷藏可以保存一个月。"),
            ("股价是什么", "股价是股票在市场上的交易价格。"),
        ],
    ),
    # 34
    (
        "vague",
        "can I run it on CPU",
        "Qwen3-Reranker-0.6B",
        (
            "Running the Qwen3 reranker on a CPU",
            "The 0.6B Qwen3 reranker runs on a CPU with transformers in float32; expect about a second per hundred short documents on a laptop, far slower than a GPU.",
        ),
        [
            ("Can I run on a broken toe", "Running on a broken toe delays healing; rest for four weeks."),
            ("CPU temperature", "A CPU runs at 40 to 70 degrees under normal load."),
            ("Can I run Windows on a Mac", "Boot Camp lets Intel Macs run Windows."),
        ],
    ),
    # 35
    (
        "long-tail",
        "OOM 排查 jvm",
        None,
        (
            "JVM 内存溢出排查",
            "Java 报 OutOfMemoryError 时，加 -XX:+HeapDumpOnOutOfMemoryError 导出堆快照，用 MAT 分析哪些对象占了内存。",
        ),
        [
            ("排查安全隐患", "每月排查一次消防安全隐患，检查灭火器和通道。"),
            ("OOM 品牌介绍", "OOM 是一家服装品牌，主打简约风格。"),
            ("JVM 是什么", "JVM 是 Java 虚拟机，负责执行字节码。"),
        ],
    ),
    # 36
    (
        "two-senses",
        "shell script loop over files",
        None,
        (
            "Writing a Bash shell script",
            "Start a shell script with #!/bin/bash, make it executable with chmod +x and run it; use set -euo pipefail to stop on errors.",
        ),
        [
            (
                "Seashell script lettering",
                "Loop the seashell script letters over the files of wedding cards.",
            ),
            ("Shell company script", "A script for a shell company pitch on a TV show."),
            ("Shell petrol station", "Shell stations sell fuel and snacks."),
        ],
    ),
    # 37
    (
        "vague",
        "多久需要换一次",
        "汽车机油",
        ("汽车机油多久换一次", "矿物机油一般五千公里换一次，全合成机油可以到一万公里或一年，以先到者为准。"),
        [
            ("多久换一次床单", "床单建议一到两周换一次。"),
            ("牙刷多久换一次", "牙刷每三个月换一次。"),
            ("多久需要体检一次", "成年人建议每年体检一次。"),
        ],
    ),
    # 38
    (
        "long-tail",
        "PDB blocks node drain",
        None,
        (
            "A pod disruption budget that stops a drain",
            "kubectl drain waits when evicting a pod would break its pod disruption budget; scale the deployment up or relax minAvailable before draining the node.",
        ),
        [
            ("PDB protein data bank", "The Protein Data Bank (PDB) stores 3D structures of proteins."),
            ("Blocked drain", "A blocked drain can be cleared with a plunger or baking soda and vinegar."),
            ("Node.js blocks", "Node.js blocks the event loop on synchronous file reads."),
        ],
    ),
    # 39
    (
        "two-senses",
        "红酒 corker",
        None,
        (
            "葡萄酒压塞器（corker）",
            "自酿红酒装瓶后用压塞器（corker）把软木塞压进瓶口，双柄式最便宜，落地式更省力。",
        ),
        [
            ("corker 的俚语意思", "英语俚语 corker 指非常出色的人或事，比如 a corker of a goal。"),
            ("红酒的功效", "适量饮用红酒据说对心血管有好处。"),
            ("开红酒的方法", "没有开瓶器时可以用鞋子慢慢把软木塞顶出来。"),
        ],
    ),
    # 40
    (
        "vague",
        "where does it write its logs",
        "systemd service",
        (
            "Logs of a systemd service",
            "A systemd service writes to the journal: read it with journalctl -u NAME, add -f to follow and --since today to limit it.",
        ),
        [
            (
                "Where to write logs in a diary",
                "Write its logs every evening: the diary keeps a log of the day.",
            ),
            ("Ship's logs", "A ship's log records position, weather and events every watch."),
            ("Where are the log tables", "Log tables are in the appendix of the maths book."),
        ],
    ),
    # 41
    (
        "long-tail",
        "GGUF 量化 q4 还是 q8",
        None,
        (
            "GGUF 量化格式怎么选",
            "llama.cpp 的 GGUF 量化里 Q4_K_M 体积小、质量损失小，显存紧张时首选；Q8_0 几乎无损，但文件大一倍。",
        ),
        [
            ("量化交易入门", "量化交易用数学模型决定买卖时机。"),
            ("Q4 季度报告", "公司 Q4 季度营收同比增长百分之十。"),
            ("Q8 奥迪车型", "奥迪 Q8 是一款大型豪华 SUV。"),
        ],
    ),
    # 42
    (
        "two-senses",
        "python decorators",
        None,
        (
            "Python function decorators",
            "A decorator in Python is a function that takes a function and returns a wrapped one; apply it with @name above the def, and keep the metadata with functools.wraps.",
        ),
        [
            (
                "Decorating a python terrarium",
                "Decorate a python terrarium with branches and hides, not sharp rocks.",
            ),
            ("Python print dress decorators", "Interior decorators love python print cushions this year."),
            ("Cake decorators", "Cake decorators use piping bags and fondant."),
        ],
    ),
    # 43
    (
        "vague",
        "它能跑多快",
        "猎豹",
        ("猎豹的奔跑速度", "猎豹是陆地上跑得最快的动物，短距离冲刺时速可达一百一十公里。"),
        [
            ("电脑能跑多快", "电脑的速度取决于处理器、内存和硬盘。"),
            ("猎豹浏览器", "猎豹浏览器是一款国产浏览器，主打安全和快速。"),
            ("人能跑多快", "博尔特的百米纪录相当于时速约四十四公里。"),
        ],
    ),
    # 44
    (
        "long-tail",
        "CORS preflight 403",
        None,
        (
            "A 403 on the CORS preflight",
            "The browser's OPTIONS preflight got 403: the server must answer OPTIONS without authentication and send Access-Control-Allow-Origin and Access-Control-Allow-Headers.",
        ),
        [
            ("403 area code", "403 is a telephone area code in Alberta, Canada."),
            ("Preflight checklist", "A pilot's preflight checklist covers fuel, flaps and instruments."),
            ("Cors beer", "Cors is a craft beer brewed in small batches."),
        ],
    ),
    # 45
    (
        "two-senses",
        "鼠标垫",
        None,
        (
            "电脑鼠标垫怎么选",
            "电脑鼠标垫分布面和硬面：布面顺滑有阻尼适合游戏，硬面速度快、好清洁，尺寸要放得下鼠标的移动范围。",
        ),
        [
            ("老鼠垫窝", "老鼠会用碎纸和棉絮给自己垫窝。"),
            ("垫子清洗", "瑜伽垫用温水和中性洗涤剂清洗后晾干。"),
            ("鼠年吉祥物", "鼠年的吉祥物是一只可爱的小老鼠。"),
        ],
    ),
    # 46
    (
        "vague",
        "is it free",
        "GitHub Actions",
        (
            "GitHub Actions pricing",
            "GitHub Actions is free for public repositories; private repositories get 2,000 free minutes a month on the Free plan and pay per minute beyond that.",
        ),
        [
            (
                "Is it free to visit the museum",
                "Entry to the museum is free on the first Sunday of each month.",
            ),
            ("Free shipping", "Orders over 50 dollars ship free."),
            ("Is it free to open a bank account", "Most banks open a current account free of charge."),
        ],
    ),
    # 47
    (
        "long-tail",
        "flash attention 装不上",
        None,
        (
            "flash-attn 安装失败",
            "pip install flash-attn 编译失败时，先装与 CUDA 和 PyTorch 版本对应的预编译 wheel，或加 --no-build-isolation 并确认 nvcc 版本。",
        ),
        [
            ("闪光灯装不上", "相机闪光灯装不上时检查热靴卡扣是否锁住。"),
            ("注意力不集中怎么办", "注意力不集中时可以试试番茄工作法。"),
            ("Flash 插件安装", "旧版浏览器需要安装 Adobe Flash 插件才能播放动画。"),
        ],
    ),
    # 48
    (
        "two-senses",
        "when do cranes migrate",
        None,
        (
            "Cranes: the birds",
            "Common cranes, tall wading birds, fly south in October in V-shaped flocks and come back to their breeding marshes in March.",
        ),
        [
            (
                "When do tower cranes move to a new site",
                "A tower crane is taken down and moved when the building's frame is finished.",
            ),
            (
                "Crane operators migrate for work",
                "Many crane operators migrate to the oil states when construction booms.",
            ),
            ("Crane hire rates", "Mobile crane hire costs by the hour, with the operator included."),
        ],
    ),
    # 49
    (
        "vague",
        "what port does it use",
        "OpenSearch",
        (
            "OpenSearch ports",
            "OpenSearch serves its REST API on port 9200 and nodes talk to each other on the transport port 9300; Dashboards listens on 5601.",
        ),
        [
            ("What port does a ship use", "Cruise ships use the deep-water port near the old town."),
            ("USB port types", "A USB-C port is reversible and carries power and data."),
            ("Port wine", "Port is a sweet fortified wine from Portugal."),
        ],
    ),
    # 50
    (
        "long-tail",
        "embedding 维度 768 还是 1024",
        None,
        (
            "向量维度怎么选",
            "embedding 向量维度越高表达越细，但索引内存和检索延迟也越大；768 维在大多数语义检索任务上已足够，1024 维适合多语言和长文本。",
        ),
        [
            ("屏幕分辨率 1024", "1024×768 是老式显示器的常见分辨率。"),
            ("三维和四维空间", "四维空间在三维空间的基础上多了一个时间维度。"),
            ("768 路公交", "768 路公交车从火车站开往机场。"),
        ],
    ),
    # 51
    (
        "two-senses",
        "how many paracetamol tablets a day",
        None,
        (
            "Tablet dosage instructions",
            "Take one 500 mg tablet every six hours with water; do not take more than four tablets in 24 hours.",
        ),
        [
            (
                "How many tablets a day for drawing",
                "A drawing tablet a day keeps boredom away: many artists use one for hours.",
            ),
            ("Tablet screen size", "Most tablets have a screen between 8 and 13 inches."),
            ("Stone tablet history", "Ancient laws were carved on a stone tablet."),
        ],
    ),
    # 52
    (
        "vague",
        "怎么备份",
        "MySQL 数据库",
        (
            "MySQL 数据库备份",
            "用 mysqldump -u root -p --single-transaction 库名 > backup.sql 备份 MySQL，数据量大时用 xtrabackup 做物理备份。",
        ),
        [
            ("手机照片怎么备份", "打开云相册自动备份，照片就会上传到云端。"),
            ("微信聊天记录怎么备份", "在电脑版微信里选择备份与恢复，可以备份聊天记录。"),
            ("备份的意思", "备份指把数据复制一份，以防丢失。"),
        ],
    ),
    # 53
    (
        "long-tail",
        "ANN recall low hnsw",
        None,
        (
            "Low recall from an HNSW index",
            "When approximate nearest neighbour search with HNSW misses results, raise ef_search at query time, or m and ef_construction when building the graph.",
        ),
        [
            ("Ann's recall of the trip", "Ann's recall of the school trip was low on details."),
            ("Product recall", "The company issued a recall of the low-quality toasters."),
            ("Ann Arbor weather", "Ann Arbor gets low temperatures in January."),
        ],
    ),
    # 54
    (
        "two-senses",
        "windows 系统更新失败",
        None,
        ("Windows 系统更新", "在设置的 Windows 更新页面检查更新并安装，安装后需要重启电脑。"),
        [
            ("窗户更新改造", "老房子的窗户更新成断桥铝窗，隔音保温更好。"),
            ("windows 窗户清洁", "用报纸擦玻璃窗户不留痕迹。"),
            ("橱窗更新", "商场橱窗每季度更新一次陈列。"),
        ],
    ),
    # 55
    (
        "vague",
        "what does it cost",
        "AWS Lambda",
        (
            "AWS Lambda pricing",
            "AWS Lambda charges per request and per GB-second of compute; the free tier includes one million requests and 400,000 GB-seconds a month.",
        ),
        [
            ("What does a wedding cost", "An average wedding costs about 30,000 dollars."),
            ("Cost of living", "The cost of living is highest in big cities."),
            ("What does a lamb cost", "A whole lamb costs about 200 dollars from the farm."),
        ],
    ),
    # 56
    (
        "long-tail",
        "RAG 召回不准",
        None,
        (
            "检索增强生成的召回优化",
            "RAG 检索召回不准时，先调整文档切块大小，再加入 BM25 和向量的混合检索，最后用 reranker 重排序前几十条。",
        ),
        [
            ("产品召回", "汽车厂商因刹车问题召回了两万辆车。"),
            ("RAG 布料", "RAG 是一种用碎布拼接的手工布料。"),
            ("射箭不准怎么办", "射箭不准时检查站姿和拉弓的一致性。"),
        ],
    ),
    # 57
    (
        "two-senses",
        "bug bite swelling and itch",
        None,
        (
            "Treating an insect bite",
            "Wash an insect bite with soap and water, cool it with ice and use an antihistamine cream for the itching; see a doctor if it swells a lot.",
        ),
        [
            ("Bug bite in software", "A bug bite in production: memory swelling after the cache expired."),
            ("Bug tracker", "Log each software bug in the tracker with steps to reproduce."),
            ("Bite-size bug fixes", "Bite-size bug fixes are good first issues for new contributors."),
        ],
    ),
    # 58
    (
        "vague",
        "这个要多少钱",
        "iPhone 15 换电池",
        (
            "iPhone 15 更换电池的费用",
            "苹果官方为 iPhone 15 更换电池收费 749 元，有 AppleCare+ 且电池健康低于 80% 时免费。",
        ),
        [
            ("这个字要怎么写", "这个字的笔顺是先横后竖。"),
            ("多少钱一斤", "今天的白菜一块钱一斤。"),
            ("电池回收", "旧电池要投放到有害垃圾桶里。"),
        ],
    ),
    # 59
    (
        "long-tail",
        "grad accumulation 和 batch size",
        None,
        (
            "梯度累积和批大小",
            "梯度累积把多个小批次的梯度加起来再更新一次参数，等效 batch size = 每卡 batch × 累积步数 × 卡数，显存不够时用它模拟大批次。",
        ),
        [
            ("batch 批处理文件", "Windows 的 batch 批处理文件以 .bat 结尾。"),
            ("积分累积规则", "每消费一元累积一个积分，积分可以兑换礼品。"),
            ("衣服尺码大小", "衣服尺码 size 分为 S、M、L、XL。"),
        ],
    ),
    # 60
    (
        "two-senses",
        "install ruby gems with bundler",
        None,
        (
            "Installing Ruby gems",
            "Ruby libraries are gems: install one with gem install NAME, or list them in a Gemfile and run bundle install.",
        ),
        [
            ("Ruby gemstones", "A ruby is a red gemstone, the July birthstone."),
            ("Gems and minerals", "Gems like ruby and sapphire are forms of corundum."),
            ("Ruby ring prices", "A ruby ring with a one-carat gem costs thousands."),
        ],
    ),
]


def write(root: Path) -> None:
    """Write article-dev (odd groups) and article-test (even groups) in BEIR layout."""
    for split, parity in (("article-dev", 1), ("article-test", 0)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
        for n, (kind, query, context, right, wrong) in enumerate(GROUPS, 1):
            if n % 2 != parity:
                continue
            group = f"g{n:02d}"
            docs = [right, *wrong]
            order = list(range(len(docs)))
            random.Random(n).shuffle(order)  # the right one is not always first in the index
            for k in order:
                title, text = docs[k]
                corpus.append({"_id": f"{group}-{k}", "title": title, "text": text, "group": group})
            meta: dict[str, str] = {"group": group, "kind": kind}
            if context:
                meta["context"] = context
            queries.append({"_id": group, "text": query, "metadata": meta})
            qrels.append(f"{group}\t{group}-0\t1")
        dump = "\n".join(json.dumps(d, ensure_ascii=False) for d in corpus) + "\n"
        (folder / "corpus.jsonl").write_text(dump, encoding="utf-8")
        dump = "\n".join(json.dumps(q, ensure_ascii=False) for q in queries) + "\n"
        (folder / "queries.jsonl").write_text(dump, encoding="utf-8")
        (folder / "qrels.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(__file__).parent)
